"""Repositories: the only place SQL is written. Keyword-only functions taking a Connection, so the
caller owns the transaction boundary (one command or request = one transaction)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Iterable

from sqlalchemy import Connection, func, insert, select, update

from clinreason.domain.lifecycle import ItemState, check_transition
from clinreason.store.tables import (
    events,
    item_sources,
    items,
    projects,
    rationales,
    reviews,
    rubric_versions,
)


class StaleStateError(RuntimeError):
    """The row was no longer in the state the caller read: someone else moved it first."""


class NotFoundError(LookupError):
    pass


def now() -> datetime:
    return datetime.now(UTC)


# --- projects -------------------------------------------------------------------------------------

def get_project(conn: Connection, *, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(projects).where(projects.c.name == name)).mappings().first()
    return dict(row) if row else None


def require_project(conn: Connection, *, name: str) -> dict[str, Any]:
    project = get_project(conn, name=name)
    if project is None:
        raise NotFoundError(f"project '{name}' does not exist in this database (run `clinreason init --project {name}`)")
    return project


def ensure_project(conn: Connection, *, name: str, config: dict[str, Any], rubric: dict[str, Any],
                   actor: str = "system") -> tuple[dict[str, Any], bool]:
    """Create the project if missing. Returns (project, created)."""
    existing = get_project(conn, name=name)
    if existing is not None:
        return existing, False
    ts = now()
    pid = conn.execute(insert(projects).values(name=name, config=config, created_at=ts)).inserted_primary_key[0]
    conn.execute(insert(rubric_versions).values(project_id=pid, version=1, body={**rubric, "version": 1},
                                                created_by=actor, created_at=ts))
    add_event(conn, project_id=pid, kind="project.created", actor=actor, after={"name": name})
    return require_project(conn, name=name), True


def latest_rubric(conn: Connection, *, project_id: int) -> dict[str, Any]:
    row = conn.execute(
        select(rubric_versions.c.body).where(rubric_versions.c.project_id == project_id)
        .order_by(rubric_versions.c.version.desc()).limit(1)
    ).first()
    if row is None:
        raise NotFoundError(f"project {project_id} has no rubric")
    return row[0]


def add_rubric_version(conn: Connection, *, project_id: int, body: dict[str, Any], actor: str) -> int:
    """Store a changed rubric as a new version (reviews keep the version they were scored with)."""
    current = latest_rubric(conn, project_id=project_id)
    strip = lambda b: {k: v for k, v in b.items() if k != "version"}  # noqa: E731
    if strip(current) == strip(body):
        return int(current["version"])
    version = int(current["version"]) + 1
    conn.execute(insert(rubric_versions).values(project_id=project_id, version=version,
                                                body={**body, "version": version}, created_by=actor,
                                                created_at=now()))
    add_event(conn, project_id=project_id, kind="rubric.versioned", actor=actor,
              before={"version": current["version"]}, after={"version": version})
    return version


# --- events ---------------------------------------------------------------------------------------

def add_event(conn: Connection, *, project_id: int, kind: str, actor: str, item_id: str | None = None,
              before: Any = None, after: Any = None, detail: dict[str, Any] | None = None) -> None:
    conn.execute(insert(events).values(project_id=project_id, item_id=item_id, kind=kind, actor=actor,
                                       before=before, after=after, detail=detail or {}, at=now()))


def add_events(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Bulk append (used by import): each row has the add_event keywords."""
    ts = now()
    batch = [{"item_id": None, "before": None, "after": None, "detail": {}, "at": ts, **r} for r in rows]
    if batch:
        conn.execute(insert(events), batch)


def item_events(conn: Connection, *, item_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(events).where(events.c.item_id == item_id).order_by(events.c.id)).mappings()
    return [dict(r) for r in rows]


# --- item state -----------------------------------------------------------------------------------

def transition_item(conn: Connection, *, item_id: str, expected: ItemState | str, target: ItemState | str,
                    actor: str, detail: dict[str, Any] | None = None, **values: Any) -> None:
    """Compare-and-set: move the item only if it is still in `expected`; write the Event in the same
    transaction. Raises TransitionError for a move the lifecycle forbids, StaleStateError when the
    row moved meanwhile (or does not exist)."""
    reason = check_transition(expected, target)
    expected_s, target_s = str(ItemState(expected)), str(ItemState(target))
    project_id = conn.execute(
        update(items)
        .where(items.c.id == item_id, items.c.state == expected_s)
        .values(state=target_s, updated_at=now(), **values)
        .returning(items.c.project_id)
    ).scalar()
    if project_id is None:
        row = conn.execute(select(items.c.state, items.c.project_id).where(items.c.id == item_id)).first()
        if row is None:
            raise StaleStateError(f"item {item_id} does not exist")
        raise StaleStateError(f"item {item_id} is '{row.state}', not '{expected_s}': it was moved by someone else")
    add_event(conn, project_id=project_id, item_id=item_id, kind="item.transition", actor=actor,
              before={"state": expected_s}, after={"state": target_s},
              detail={"reason": reason, **(detail or {})})


def transition_items(conn: Connection, *, project_id: int, item_ids: list[str], expected: ItemState | str,
                     target: ItemState | str, actor: str, details: dict[str, dict[str, Any]] | None = None,
                     extra_where: Any = None, **values: Any) -> bool:
    """The batch form of `transition_item`: one UPDATE for many items that share expected and target
    state, one multi-row INSERT for their events. Returns False, having changed nothing, when any of
    them was no longer in `expected` (the caller then falls back to moving them one by one); use it
    inside a savepoint or a transaction the caller can roll back."""
    if not item_ids:
        return True
    reason = check_transition(expected, target)
    expected_s, target_s = str(ItemState(expected)), str(ItemState(target))
    ts = now()
    stmt = update(items).where(items.c.id.in_(item_ids), items.c.state == expected_s)
    if extra_where is not None:
        stmt = stmt.where(extra_where)
    result = conn.execute(stmt.values(state=target_s, updated_at=ts, **values))
    if result.rowcount != len(item_ids):
        return False
    details = details or {}
    conn.execute(insert(events), [
        {"project_id": project_id, "item_id": item_id, "kind": "item.transition", "actor": actor,
         "before": {"state": expected_s}, "after": {"state": target_s},
         "detail": {"reason": reason, **details.get(item_id, {})}, "at": ts} for item_id in item_ids])
    return True


def get_item(conn: Connection, *, project_id: int, item_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(items).where(items.c.id == item_id, items.c.project_id == project_id)).mappings().first()
    return dict(row) if row else None


def item_source_rows(conn: Connection, *, item_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(item_sources).where(item_sources.c.item_id == item_id).order_by(item_sources.c.id))
    return [dict(r) for r in rows.mappings()]


# --- status ---------------------------------------------------------------------------------------

def status_counts(conn: Connection, *, project_id: int) -> dict[str, Any]:
    """The numbers `clinreason status --json` and GET /api/status print."""
    from clinreason.domain.lifecycle import ItemState as S

    by_state = {s.value: 0 for s in S}
    for state, n in conn.execute(
        select(items.c.state, func.count()).where(items.c.project_id == project_id).group_by(items.c.state)
    ):
        by_state[state] = n
    n_items = sum(by_state.values())
    by_source = {
        src: n
        for src, n in conn.execute(
            select(item_sources.c.source, func.count(func.distinct(item_sources.c.item_id)))
            .join(items, items.c.id == item_sources.c.item_id)
            .where(items.c.project_id == project_id)
            .group_by(item_sources.c.source)
            .order_by(item_sources.c.source)
        )
    }
    rat_q = select(func.count()).select_from(rationales.join(items, items.c.id == rationales.c.item_id)).where(
        items.c.project_id == project_id)
    n_rationales = conn.execute(rat_q).scalar_one()
    n_reviews = conn.execute(
        select(func.count()).select_from(reviews.join(items, items.c.id == reviews.c.item_id))
        .where(items.c.project_id == project_id)
    ).scalar_one()
    by_model = {
        (model or "unknown"): n
        for model, n in conn.execute(
            select(rationales.c.model, func.count())
            .select_from(rationales.join(items, items.c.id == rationales.c.item_id))
            .where(items.c.project_id == project_id, rationales.c.origin.in_(["generated", "regenerated"]))
            .group_by(rationales.c.model)
            .order_by(rationales.c.model)
        )
    }
    tokens = conn.execute(
        select(func.coalesce(func.sum(rationales.c.prompt_tokens), 0),
               func.coalesce(func.sum(rationales.c.completion_tokens), 0),
               func.coalesce(func.sum(rationales.c.cost), 0.0))
        .select_from(rationales.join(items, items.c.id == rationales.c.item_id))
        .where(items.c.project_id == project_id)
    ).one()
    flagged = conn.execute(
        select(func.count()).where(items.c.project_id == project_id, items.c.flag_reason.is_not(None))
    ).scalar_one()
    failures = {
        (reason or "unknown"): n
        for reason, n in conn.execute(
            select(items.c.fail_reason, func.count())
            .where(items.c.project_id == project_id, items.c.state == S.FAILED.value)
            .group_by(items.c.fail_reason)
        )
    }
    done = by_state[S.ACCEPTED.value] + by_state[S.EXCLUDED.value]
    return {
        "items": n_items,
        "rationales": n_rationales,
        "reviews": n_reviews,
        "by_state": by_state,
        "by_source": by_source,
        "by_model": by_model,
        "flagged": flagged,
        "failures": failures,
        "progress": round(done / n_items, 4) if n_items else 0.0,
        "tokens": {"prompt": int(tokens[0]), "completion": int(tokens[1])},
        "cost_usd": round(float(tokens[2]), 6),
    }
