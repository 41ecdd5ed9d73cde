"""Adjudication: senior experts settle escalated items (strikes exhausted, disagreement, flagged
question). They see every version and every review, and their decision is final: accept a version,
write the final text themselves, or exclude the item with a reason. Two adjudicators deciding the same
item at once: the first wins (compare-and-set on the item's state), the second is told who did."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, func, insert, select

from clinreason.domain.checks import simhash
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.rationale_text import ParsedRationale, parse_rationale
from clinreason.store import repository as repo
from clinreason.store.tables import decisions, items, rationales


class AdjudicationError(ValueError):
    """The decision cannot be made (wrong state, unknown version, empty text, already decided)."""


def adjudication_queue(conn: Connection, *, project_id: int, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(select(items.c.id, items.c.question, items.c.flag_reason, items.c.strikes, items.c.updated_at)
                        .where(items.c.project_id == project_id, items.c.state == ItemState.ESCALATED.value)
                        .order_by(items.c.updated_at, items.c.id).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def _already_decided(conn: Connection, item_id: str) -> AdjudicationError:
    row = conn.execute(select(decisions.c.decided_by, decisions.c.kind).where(decisions.c.item_id == item_id)).first()
    state = conn.execute(select(items.c.state).where(items.c.id == item_id)).scalar()
    if row is not None:
        return AdjudicationError(f"item {item_id} was already decided by {row.decided_by} ({row.kind})")
    return AdjudicationError(f"item {item_id} is '{state}', not escalated: nothing to adjudicate")


def _require_escalated(conn: Connection, project_id: int, item_id: str) -> dict[str, Any]:
    item = repo.get_item(conn, project_id=project_id, item_id=item_id)
    if item is None:
        raise LookupError(f"no item {item_id} in this project")
    if item["state"] != ItemState.ESCALATED.value:
        raise _already_decided(conn, item_id)
    return item


def _finish(conn: Connection, *, item_id: str, target: ItemState, kind: str, rationale_id: str | None,
            adjudicator: str, reason: str) -> None:
    try:
        repo.transition_item(conn, item_id=item_id, expected=ItemState.ESCALATED, target=target,
                             actor=f"user:{adjudicator}", detail={"decision": kind, "rationale_id": rationale_id,
                                                                  "reason": reason})
    except repo.StaleStateError:
        raise _already_decided(conn, item_id) from None
    conn.execute(insert(decisions).values(item_id=item_id, kind=kind, rationale_id=rationale_id,
                                          decided_by=adjudicator, reason=reason, created_at=repo.now()))
    project_id = conn.execute(select(items.c.project_id).where(items.c.id == item_id)).scalar_one()
    repo.add_event(conn, project_id=project_id, item_id=item_id, kind=f"decision.{kind}", actor=f"user:{adjudicator}",
                   after={"rationale_id": rationale_id}, detail={"reason": reason, "final": True})


def accept_version(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, adjudicator: str,
                   reason: str = "") -> None:
    _require_escalated(conn, project_id, item_id)
    owner = conn.execute(select(rationales.c.item_id).where(rationales.c.id == rationale_id)).scalar()
    if owner != item_id:
        raise AdjudicationError(f"rationale {rationale_id} is not a version of item {item_id}")
    _finish(conn, item_id=item_id, target=ItemState.ACCEPTED, kind="adjudication", rationale_id=rationale_id,
            adjudicator=adjudicator, reason=reason or "adjudicator accepted this version")


def write_final(conn: Connection, *, project_id: int, item_id: str, text: str, adjudicator: str,
                reason: str = "") -> str:
    """The adjudicator's own text becomes a new version (origin `adjudicated`) and is accepted."""
    item = _require_escalated(conn, project_id, item_id)
    if not text or not text.strip():
        raise AdjudicationError("text: the final rationale must not be empty")
    options = {label: option for label, option in item["options"]}
    parsed = parse_rationale(text, options)
    if isinstance(parsed, ParsedRationale):
        steps, final = parsed.steps, parsed.final_answer
    else:
        steps = [line.strip() for line in text.splitlines() if line.strip()]
        final = list(item["answer_labels"])
    version = int(conn.execute(select(func.max(rationales.c.version)).where(rationales.c.item_id == item_id))
                  .scalar() or 0) + 1
    parent = version - 1 if version > 1 else None
    rationale_id = uuid.uuid4().hex
    conn.execute(insert(rationales).values(
        id=rationale_id, item_id=item_id, version=version, parent_version=parent, origin="adjudicated",
        author=f"user:{adjudicator}", steps=steps, final_answer=final, text=text.strip(), params={},
        parse_status="ok" if isinstance(parsed, ParsedRationale) else "failed",
        parse_error=None if isinstance(parsed, ParsedRationale) else parsed.reason, prompt_tokens=0,
        completion_tokens=0, cost=0.0, fingerprint=simhash(text), created_at=repo.now()))
    _finish(conn, item_id=item_id, target=ItemState.ACCEPTED, kind="adjudication", rationale_id=rationale_id,
            adjudicator=adjudicator, reason=reason or "adjudicator wrote the final rationale")
    return rationale_id


def exclude(conn: Connection, *, project_id: int, item_id: str, reason: str, adjudicator: str) -> None:
    _require_escalated(conn, project_id, item_id)
    if not reason or not reason.strip():
        raise AdjudicationError("reason: say why the item is excluded (e.g. flawed question, wrong gold answer)")
    _finish(conn, item_id=item_id, target=ItemState.EXCLUDED, kind="excluded", rationale_id=None,
            adjudicator=adjudicator, reason=reason.strip())
