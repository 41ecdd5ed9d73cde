"""Calibration items: rationale versions whose truth an admin knows — a known-good version, or one with a
seeded error — slipped into reviewers' queues at `review.calibration_rate` to measure the reviewers.

A calibration item leaves the normal flow (state `calibration`: no consensus, never exported). To a
reviewer it is leased, shown and submitted exactly like any other version — same pages, same API, same
lease — so it cannot be told apart; each reviewer sees each calibration version at most once. Their
results are the known truths that anchor the reliability model (stages/consensus.fit_evidence) and are
shown per reviewer on the dashboard.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select

from clinreason.config import ReviewConfig
from clinreason.domain.consensus import ReviewVote, passes
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.rubric import rubric_from_dict
from clinreason.store import repository as repo
from clinreason.store.tables import assignments, calibration, items, projects, rationales, reviews, users

EXPECTATIONS = ("good", "bad")
MARKABLE = (ItemState.IN_REVIEW.value, ItemState.ESCALATED.value)


class CalibrationError(ValueError):
    """A calibration request that cannot be carried out; the message says why."""


def rate(conn: Connection, project_id: int) -> float:
    """The project's `review.calibration_rate` (its configured default when the project does not set it)."""
    config = conn.execute(select(projects.c.config).where(projects.c.id == project_id)).scalar_one()
    return ReviewConfig.model_validate((config or {}).get("review") or {}).calibration_rate


def mark(conn: Connection, *, project_id: int, item_id: str, expect: str, actor: str, version: int | None = None,
         note: str = "", seeded_text: str | None = None) -> dict[str, Any]:
    """Make `item_id` a calibration item whose version `version` (default: the latest) is known `expect`
    (good | bad). With `seeded_text`, a new version carrying that text (e.g. the latest with an error
    seeded into it) is stored first and becomes the calibration version."""
    if expect not in EXPECTATIONS:
        raise CalibrationError(f"expect must be one of {', '.join(EXPECTATIONS)}, not '{expect}'")
    item = conn.execute(select(items.c.id, items.c.state, items.c.project_id).where(items.c.id == item_id)
                        .with_for_update()).first()
    if item is None or item.project_id != project_id:
        raise CalibrationError(f"item {item_id} does not exist in this project")
    if item.state not in MARKABLE:
        raise CalibrationError(f"item {item_id} is '{item.state}': only items in review or escalated can become "
                               "calibration items (accepted and excluded items are final)")
    versions = conn.execute(select(rationales).where(rationales.c.item_id == item_id)
                            .order_by(rationales.c.version)).mappings().all()
    if not versions:
        raise CalibrationError(f"item {item_id} has no rationale version to calibrate with")
    chosen = versions[-1] if version is None else next((v for v in versions if v["version"] == version), None)
    if chosen is None:
        raise CalibrationError(f"item {item_id} has no version {version} (it has 1 to {versions[-1]['version']})")
    if seeded_text is not None:
        if not seeded_text.strip():
            raise CalibrationError("the seeded text is empty")
        chosen = _store_seeded_version(conn, base=chosen, latest=versions[-1]["version"], text=seeded_text,
                                       actor=actor)
    ts = repo.now()
    repo.transition_item(conn, item_id=item_id, expected=item.state, target=ItemState.CALIBRATION, actor=actor,
                         detail={"rationale_id": chosen["id"], "version": chosen["version"], "expect": expect})
    conn.execute(insert(calibration).values(project_id=project_id, item_id=item_id, rationale_id=chosen["id"],
                                            expect=expect, note=note, created_by=actor, created_at=ts))
    return {"item_id": item_id, "rationale_id": chosen["id"], "version": chosen["version"], "expect": expect}


def _store_seeded_version(conn: Connection, *, base: Any, latest: int, text: str, actor: str) -> dict[str, Any]:
    rid = hashlib.sha256(f"{base['id']}:seeded:{latest + 1}".encode()).hexdigest()[:32]
    row = {"id": rid, "item_id": base["item_id"], "version": latest + 1, "parent_version": base["version"],
           "origin": "edited", "author": actor, "steps": base["steps"], "final_answer": base["final_answer"],
           "text": text, "model": None, "params": {}, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
           "parse_status": "ok", "created_at": repo.now()}
    conn.execute(insert(rationales).values(**row))
    return row


def unmark(conn: Connection, *, project_id: int, item_id: str, actor: str) -> None:
    """Withdraw a calibration item: it returns to review as any other item (its reviews stay)."""
    found = conn.execute(select(calibration.c.id).where(calibration.c.item_id == item_id,
                                                        calibration.c.project_id == project_id)).first()
    if found is None:
        raise CalibrationError(f"item {item_id} is not a calibration item of this project")
    conn.execute(delete(calibration).where(calibration.c.id == found.id))
    repo.transition_item(conn, item_id=item_id, expected=ItemState.CALIBRATION, target=ItemState.IN_REVIEW,
                         actor=actor, detail={"calibration": "withdrawn"})


def _draw(reviewer_id: int, served: int) -> float:
    """A uniform number fixed by the reviewer and how many leases they have had: reproducible."""
    return int(hashlib.sha256(f"calibration:{reviewer_id}:{served}".encode()).hexdigest()[:8], 16) / 2**32


def candidate(conn: Connection, *, project_id: int, reviewer_id: int, author: str, rate: float) -> Any | None:
    """The calibration version to serve this reviewer now, or None: drawn at `rate` per lease, among
    calibration versions they have neither reviewed, been leased nor written."""
    if rate <= 0:
        return None
    seen = exists().where(assignments.c.rationale_id == calibration.c.rationale_id,
                          assignments.c.reviewer_id == reviewer_id)
    found = conn.execute(
        select(rationales.c.id, rationales.c.item_id, rationales.c.version)
        .select_from(calibration.join(rationales, rationales.c.id == calibration.c.rationale_id)
                     .join(items, items.c.id == calibration.c.item_id))
        .where(calibration.c.project_id == project_id, items.c.state == ItemState.CALIBRATION.value, ~seen,
               rationales.c.author != author)
        .order_by(calibration.c.created_at, calibration.c.id).limit(1)).first()
    if found is None:  # the usual case (no probe left for them): no draw to make
        return None
    served = conn.execute(select(func.count()).select_from(assignments)
                          .where(assignments.c.reviewer_id == reviewer_id)).scalar_one()
    return found if _draw(reviewer_id, served) < rate else None


def results(conn: Connection, *, project_id: int) -> dict[str, dict[str, Any]]:
    """Per reviewer (username): calibration reviews, how many matched the known truth, and the misses."""
    rubric = rubric_from_dict(repo.latest_rubric(conn, project_id=project_id))
    out: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        select(users.c.username, reviews.c.verdict, reviews.c.scores, calibration.c.expect, calibration.c.item_id)
        .select_from(reviews.join(calibration, calibration.c.rationale_id == reviews.c.rationale_id)
                     .join(users, users.c.id == reviews.c.reviewer_id))
        .where(calibration.c.project_id == project_id).order_by(reviews.c.created_at))
    for name, verdict, scores, expect, item_id in rows:
        said_pass = passes(rubric, ReviewVote(name, verdict, dict(scores or {})))
        entry = out.setdefault(name, {"reviews": 0, "correct": 0, "missed": []})
        entry["reviews"] += 1
        if said_pass == (expect == "good"):
            entry["correct"] += 1
        else:
            entry["missed"].append(item_id)
    return out


def listing(conn: Connection, *, project_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(calibration.c.item_id, calibration.c.rationale_id, rationales.c.version, calibration.c.expect,
               calibration.c.note, calibration.c.created_by, calibration.c.created_at,
               select(func.count()).select_from(reviews).where(reviews.c.rationale_id == calibration.c.rationale_id)
               .scalar_subquery().label("reviews"))
        .join(rationales, rationales.c.id == calibration.c.rationale_id)
        .where(calibration.c.project_id == project_id).order_by(calibration.c.created_at)).mappings()
    from clinreason.stages.review import aware  # the review stage imports this module

    return [{**dict(r), "created_at": aware(r["created_at"]).isoformat()} for r in rows]


def record_result(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str) -> None:
    """After a calibration review: an event for the audit trail (nothing else moves)."""
    expect = conn.execute(select(calibration.c.expect).where(calibration.c.item_id == item_id)).scalar()
    if expect is None:
        return
    repo.add_event(conn, project_id=project_id, item_id=item_id, kind="calibration.reviewed", actor=actor,
                   detail={"rationale_id": rationale_id, "expect": expect})
