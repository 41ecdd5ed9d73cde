"""Calibration items: versions whose truth an admin knows, served to reviewers to measure them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select

from clinreason.domain.lifecycle import ItemState
from clinreason.store.common import aware, now
from clinreason.store.queue import Candidate
from clinreason.store.tables import assignments, calibration, items, rationales, reviews, users


def add_probe(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, expect: str, note: str,
              actor: str) -> None:
    conn.execute(insert(calibration).values(project_id=project_id, item_id=item_id, rationale_id=rationale_id,
                                            expect=expect, note=note, created_by=actor, created_at=now()))


def remove_probe(conn: Connection, *, project_id: int, item_id: str) -> bool:
    """Withdraw the item's calibration row; False when it had none in this project."""
    result = conn.execute(delete(calibration).where(calibration.c.item_id == item_id,
                                                    calibration.c.project_id == project_id))
    return bool(result.rowcount)


def expectation(conn: Connection, *, item_id: str) -> str | None:
    """'good' | 'bad' for a calibration item, else None."""
    value = conn.execute(select(calibration.c.expect).where(calibration.c.item_id == item_id)).scalar()
    return str(value) if value is not None else None


def truths(conn: Connection, *, project_id: int) -> dict[str, bool]:
    """Rationale id -> known sound (True) or defective (False), for every calibration version."""
    return {rid: expect == "good" for rid, expect in conn.execute(
        select(calibration.c.rationale_id, calibration.c.expect).where(calibration.c.project_id == project_id))}


def unseen_probe(conn: Connection, *, project_id: int, reviewer_id: int, author: str) -> Candidate | None:
    """The oldest calibration version this reviewer has neither been leased nor written."""
    seen = exists().where(assignments.c.rationale_id == calibration.c.rationale_id,
                          assignments.c.reviewer_id == reviewer_id)
    found = conn.execute(
        select(rationales.c.id, rationales.c.item_id, rationales.c.version)
        .select_from(calibration.join(rationales, rationales.c.id == calibration.c.rationale_id)
                     .join(items, items.c.id == calibration.c.item_id))
        .where(calibration.c.project_id == project_id, items.c.state == ItemState.CALIBRATION.value, ~seen,
               rationales.c.author != author)
        .order_by(calibration.c.created_at, calibration.c.id).limit(1)).first()
    return Candidate(found.id, found.item_id, found.version) if found else None


def probe_reviews(conn: Connection, *, project_id: int) -> list[tuple[str, str, dict[str, int], str, str]]:
    """(reviewer username, verdict, scores, expect, item id) of every calibration review, oldest first."""
    rows = conn.execute(
        select(users.c.username, reviews.c.verdict, reviews.c.scores, calibration.c.expect, calibration.c.item_id)
        .select_from(reviews.join(calibration, calibration.c.rationale_id == reviews.c.rationale_id)
                     .join(users, users.c.id == reviews.c.reviewer_id))
        .where(calibration.c.project_id == project_id).order_by(reviews.c.created_at))
    return [(name, verdict, dict(scores or {}), expect, item_id) for name, verdict, scores, expect, item_id in rows]


def listing(conn: Connection, *, project_id: int) -> list[dict[str, Any]]:
    """The project's calibration items with their version, expectation, note, author and review count."""
    rows = conn.execute(
        select(calibration.c.item_id, calibration.c.rationale_id, rationales.c.version, calibration.c.expect,
               calibration.c.note, calibration.c.created_by, calibration.c.created_at,
               select(func.count()).select_from(reviews).where(reviews.c.rationale_id == calibration.c.rationale_id)
               .scalar_subquery().label("reviews"))
        .join(rationales, rationales.c.id == calibration.c.rationale_id)
        .where(calibration.c.project_id == project_id).order_by(calibration.c.created_at)).mappings()
    out = []
    for r in rows:
        created: datetime | None = aware(r["created_at"])
        out.append({**dict(r), "created_at": created.isoformat() if created else None})
    return out
