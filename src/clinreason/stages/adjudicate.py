"""Adjudication: senior experts settle escalated items (strikes exhausted, disagreement, flagged
question). They see every version and every review, and their decision is final: accept a version,
write the final text themselves, or exclude the item with a reason. Two adjudicators deciding the same
item at once: the first wins (compare-and-set on the item's state), the second is told who did."""

from __future__ import annotations

from sqlalchemy import Connection

from clinreason.domain.lifecycle import ItemState
from clinreason.domain.messages import N_, Translatable
from clinreason.domain.records import Item, Origin
from clinreason.store import decisions as decision_store
from clinreason.store import items as item_store
from clinreason.store import rationales as rationale_store
from clinreason.store.common import StaleStateError
from clinreason.store.rationales import NewVersion


class AdjudicationError(Translatable, ValueError):
    """The decision cannot be made (wrong state, unknown version, empty text, already decided)."""


def adjudication_queue(conn: Connection, *, project_id: int, limit: int = 100) -> list[Item]:
    """Escalated items, longest waiting first."""
    return item_store.items_in_state(conn, project_id=project_id, state=ItemState.ESCALATED.value, limit=limit)


def _already_decided(conn: Connection, item_id: str) -> AdjudicationError:
    decided = decision_store.get_decision(conn, item_id=item_id)
    if decided is not None:
        return AdjudicationError(N_("item {item_id} was already decided by {decided_by} ({kind})"),
                                 {"item_id": item_id, "decided_by": decided.decided_by, "kind": decided.kind})
    state = item_store.item_state(conn, item_id=item_id)
    return AdjudicationError(N_("item {item_id} is '{state}', not escalated: nothing to adjudicate"),
                             {"item_id": item_id, "state": state})


def _require_escalated(conn: Connection, project_id: int, item_id: str) -> Item:
    item = item_store.get_item(conn, project_id=project_id, item_id=item_id)
    if item is None:
        raise LookupError(f"no item {item_id} in this project")
    if item.state != ItemState.ESCALATED.value:
        raise _already_decided(conn, item_id)
    return item


def _finish(conn: Connection, *, item: Item, target: ItemState, kind: str, rationale_id: str | None,
            adjudicator: str, reason: str) -> None:
    try:
        item_store.transition_item(conn, item_id=item.id, expected=ItemState.ESCALATED, target=target,
                                   actor=f"user:{adjudicator}", detail={"decision": kind, "rationale_id": rationale_id,
                                                                        "reason": reason})
    except StaleStateError:
        raise _already_decided(conn, item.id) from None
    decision_store.add_decision(conn, item_id=item.id, kind=kind, rationale_id=rationale_id, decided_by=adjudicator,
                                reason=reason)
    decision_store.add_event(conn, project_id=item.project_id, item_id=item.id, kind=f"decision.{kind}",
                             actor=f"user:{adjudicator}", after={"rationale_id": rationale_id},
                             detail={"reason": reason, "final": True})


def accept_version(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, adjudicator: str,
                   reason: str = "") -> None:
    item = _require_escalated(conn, project_id, item_id)
    version = rationale_store.get_version(conn, rationale_id=rationale_id)
    if version is None or version.item_id != item_id:
        raise AdjudicationError(N_("rationale {rationale_id} is not a version of item {item_id}"),
                                {"rationale_id": rationale_id, "item_id": item_id})
    _finish(conn, item=item, target=ItemState.ACCEPTED, kind="adjudication", rationale_id=rationale_id,
            adjudicator=adjudicator, reason=reason or "adjudicator accepted this version")


def write_final(conn: Connection, *, project_id: int, item_id: str, text: str, adjudicator: str,
                reason: str = "") -> str:
    """The adjudicator's own text becomes a new version (origin `adjudicated`) and is accepted."""
    item = _require_escalated(conn, project_id, item_id)
    if not text or not text.strip():
        raise AdjudicationError("text: the final rationale must not be empty")
    final = rationale_store.add_version(conn, NewVersion(item=item, origin=Origin.ADJUDICATED,
                                                         author=f"user:{adjudicator}", text=text.strip()))
    _finish(conn, item=item, target=ItemState.ACCEPTED, kind="adjudication", rationale_id=final.id,
            adjudicator=adjudicator, reason=reason or "adjudicator wrote the final rationale")
    return final.id


def exclude(conn: Connection, *, project_id: int, item_id: str, reason: str, adjudicator: str) -> None:
    item = _require_escalated(conn, project_id, item_id)
    if not reason or not reason.strip():
        raise AdjudicationError("reason: say why the item is excluded (e.g. flawed question, wrong gold answer)")
    _finish(conn, item=item, target=ItemState.EXCLUDED, kind="excluded", rationale_id=None,
            adjudicator=adjudicator, reason=reason.strip())
