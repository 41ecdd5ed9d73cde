"""An item's whole story, read in one place: versions, checks, reviews, decisions, events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from clinreason.store import repository as repo
from clinreason.store.tables import checks, decisions, rationales, reviews, users


def item_history(conn: Connection, *, project_id: int, item_id: str) -> dict[str, Any] | None:
    item = repo.get_item(conn, project_id=project_id, item_id=item_id)
    if item is None:
        return None
    versions = [dict(r) for r in conn.execute(select(rationales).where(rationales.c.item_id == item_id)
                                              .order_by(rationales.c.version)).mappings()]
    ids = [v["id"] for v in versions]
    check_rows = [dict(r) for r in conn.execute(select(checks).where(checks.c.rationale_id.in_(ids))
                                                .order_by(checks.c.id)).mappings()] if ids else []
    review_rows = [dict(r) for r in conn.execute(
        select(reviews, users.c.username).join(users, users.c.id == reviews.c.reviewer_id)
        .where(reviews.c.item_id == item_id).order_by(reviews.c.created_at, reviews.c.id)).mappings()]
    decision = conn.execute(select(decisions).where(decisions.c.item_id == item_id)).mappings().first()
    return {
        "item": item,
        "sources": repo.item_source_rows(conn, item_id=item_id),
        "versions": versions,
        "checks": check_rows,
        "reviews": review_rows,
        "decision": dict(decision) if decision else None,
        "events": repo.item_events(conn, item_id=item_id),
    }
