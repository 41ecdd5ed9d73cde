"""Decisions and events: how items ended, and the append-only audit log of every state change."""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import Connection, RowMapping, insert, select

from clinreason.domain.records import Decision, Event
from clinreason.store.common import bind_processor, bind_value, insert_rows, json_serializer, now
from clinreason.store.hot import Hot
from clinreason.store.tables import decisions, events, items


def _event(row: RowMapping) -> Event:
    return Event(kind=row["kind"], actor=row["actor"], project_id=row["project_id"], item_id=row["item_id"],
                 before=row["before"], after=row["after"], detail=row["detail"] or {}, at=row["at"], id=row["id"])


def _decision(row: RowMapping) -> Decision:
    return Decision(item_id=row["item_id"], kind=row["kind"], rationale_id=row["rationale_id"],
                    decided_by=row["decided_by"], reason=row["reason"] or "", created_at=row["created_at"],
                    id=row["id"])


#: built once: every event is the same statement with other parameters (SQLAlchemy's compiled cache)
_ADD_EVENT = Hot(insert(events))


def add_event(conn: Connection, *, project_id: int, kind: str, actor: str, item_id: str | None = None,
              before: Any = None, after: Any = None, detail: dict[str, Any] | None = None) -> None:
    _ADD_EVENT.run(conn, {"project_id": project_id, "item_id": item_id, "kind": kind, "actor": actor,
                              "before": before, "after": after, "detail": detail or {}, "at": now()})


_EVENT_COLUMNS = ("project_id", "item_id", "kind", "actor", "before", "after", "detail", "at")


def add_events(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Bulk append (used by import): each row has the add_event keywords. One bulk insert; what is stored
    is what add_event stores (None in before/after: JSON null)."""
    ts = bind_value(conn, events, "at", now())
    process = bind_processor(conn, events, "after")  # before, after and detail: the same JSON type
    dumps = json_serializer(conn)
    assert process is not None
    # a batch's events share a few before/after objects (the import's one {"state": ...}): serialised once
    shared: dict[int, tuple[Any, Any]] = {}

    def state(value: Any) -> Any:
        hit = shared.get(id(value))
        if hit is None or hit[0] is not value:
            hit = shared[id(value)] = (value, process(value))
        return hit[1]

    insert_rows(conn, events, _EVENT_COLUMNS, [
        (r["project_id"], r.get("item_id"), r["kind"], r["actor"], state(r.get("before")), state(r.get("after")),
         dumps(detail) if isinstance(detail := r.get("detail", {}), dict) else process(detail), ts)
        for r in rows])


def item_events(conn: Connection, *, item_id: str) -> list[Event]:
    rows = conn.execute(select(events).where(events.c.item_id == item_id).order_by(events.c.id)).mappings()
    return [_event(r) for r in rows]


_ADD_DECISION = Hot(insert(decisions))


def add_decision(conn: Connection, *, item_id: str, kind: str, rationale_id: str | None, decided_by: str,
                 reason: str) -> Decision:
    ts = now()
    _ADD_DECISION.run(conn, {"item_id": item_id, "kind": kind, "rationale_id": rationale_id, "decided_by": decided_by,
                             "reason": reason, "created_at": ts})
    return Decision(item_id=item_id, kind=kind, rationale_id=rationale_id, decided_by=decided_by, reason=reason,
                    created_at=ts)


def get_decision(conn: Connection, *, item_id: str) -> Decision | None:
    row = conn.execute(select(decisions).where(decisions.c.item_id == item_id)).mappings().first()
    return _decision(row) if row else None


def project_decisions(conn: Connection, *, project_id: int, kind: str | None = None) -> list[Decision]:
    query = select(decisions).join(items, items.c.id == decisions.c.item_id).where(items.c.project_id == project_id)
    if kind is not None:
        query = query.where(decisions.c.kind == kind)
    return [_decision(r) for r in conn.execute(query.order_by(decisions.c.id)).mappings()]
