"""Privacy holds: each scan that found identifiers before an LLM request, held or flagged, and how an admin
resolved it (stages/privacy.py decides; this module only reads and writes the rows)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, update

from clinreason.store.common import now
from clinreason.store.tables import privacy_holds

HELD, FLAGGED, RELEASED, EDITED, EXCLUDED = "held", "flagged", "released", "edited", "excluded"
STATUSES = (HELD, FLAGGED, RELEASED, EDITED, EXCLUDED)


def _hold(row: RowMapping) -> dict[str, Any]:
    return {"id": row["id"], "project_id": row["project_id"], "item_id": row["item_id"], "kind": row["kind"],
            "gate": row["gate"], "status": row["status"], "resume_state": row["resume_state"],
            "endpoint": row["endpoint"], "findings": list(row["findings"] or []), "created_by": row["created_by"],
            "created_at": row["created_at"], "resolved_by": row["resolved_by"], "resolved_at": row["resolved_at"],
            "reason": row["reason"]}


def add_hold(conn: Connection, *, project_id: int, item_id: str, kind: str, gate: str, status: str,
             resume_state: str | None, endpoint: str, findings: list[dict[str, Any]], actor: str) -> int:
    """Record a scan's findings (status `held` or `flagged`); returns the row's id."""
    if status not in (HELD, FLAGGED):
        raise ValueError(f"a new privacy record is held or flagged, not '{status}'")
    return int(conn.execute(privacy_holds.insert().values(
        project_id=project_id, item_id=item_id, kind=kind, gate=gate, status=status, resume_state=resume_state,
        endpoint=endpoint[:300], findings=findings, created_by=actor, created_at=now())
        .returning(privacy_holds.c.id)).scalar_one())


def open_hold(conn: Connection, *, project_id: int, item_id: str) -> dict[str, Any] | None:
    """The item's unresolved hold (there is at most one: a held item makes no request), or None."""
    row = conn.execute(select(privacy_holds).where(
        privacy_holds.c.project_id == project_id, privacy_holds.c.item_id == item_id,
        privacy_holds.c.status == HELD).order_by(privacy_holds.c.id.desc()).limit(1)).mappings().first()
    return _hold(row) if row else None


def resolve_hold(conn: Connection, *, hold_id: int, status: str, actor: str, reason: str) -> bool:
    """Compare-and-set: close a hold that is still `held` as released | edited | excluded. False when
    someone else resolved it first."""
    if status not in (RELEASED, EDITED, EXCLUDED):
        raise ValueError(f"a hold is resolved as released, edited or excluded, not '{status}'")
    result = conn.execute(update(privacy_holds).where(privacy_holds.c.id == hold_id, privacy_holds.c.status == HELD)
                          .values(status=status, resolved_by=actor, resolved_at=now(), reason=reason))
    return result.rowcount == 1


def released_digests(conn: Connection, *, item_ids: list[str]) -> dict[str, set[str]]:
    """Item id -> the digests of findings an admin released for it (those need no hold again)."""
    if not item_ids:
        return {}
    out: dict[str, set[str]] = {}
    rows = conn.execute(select(privacy_holds.c.item_id, privacy_holds.c.findings).where(
        privacy_holds.c.item_id.in_(item_ids), privacy_holds.c.status == RELEASED))
    for item_id, findings in rows:
        out.setdefault(item_id, set()).update(str(f.get("digest")) for f in findings or [] if f.get("digest"))
    return out


def item_holds(conn: Connection, *, item_id: str) -> list[dict[str, Any]]:
    """Every privacy record of the item, oldest first."""
    rows = conn.execute(select(privacy_holds).where(privacy_holds.c.item_id == item_id).order_by(privacy_holds.c.id))
    return [_hold(r) for r in rows.mappings()]


def project_holds(conn: Connection, *, project_id: int, status: str | None = HELD,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """The project's privacy records (of one status, or all with None), oldest first."""
    query = select(privacy_holds).where(privacy_holds.c.project_id == project_id)
    if status is not None:
        query = query.where(privacy_holds.c.status == status)
    query = query.order_by(privacy_holds.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [_hold(r) for r in conn.execute(query).mappings()]


def hold_counts(conn: Connection, *, project_id: int) -> dict[str, Any]:
    """Records per status, and the findings per type of the open holds and of the flagged requests."""
    by_status = {s: 0 for s in STATUSES}
    for status, n in conn.execute(select(privacy_holds.c.status, func.count())
                                  .where(privacy_holds.c.project_id == project_id).group_by(privacy_holds.c.status)):
        by_status[str(status)] = int(n)
    held_types: dict[str, int] = {}
    flagged_types: dict[str, int] = {}
    rows = conn.execute(select(privacy_holds.c.status, privacy_holds.c.findings).where(
        privacy_holds.c.project_id == project_id, privacy_holds.c.status.in_([HELD, FLAGGED])))
    for status, findings in rows:
        target = held_types if status == HELD else flagged_types
        for f in findings or []:
            target[str(f.get("type"))] = target.get(str(f.get("type")), 0) + 1
    return {"by_status": by_status, "held_findings": dict(sorted(held_types.items())),
            "flagged_findings": dict(sorted(flagged_types.items()))}
