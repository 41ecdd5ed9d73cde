"""Items: the questions of a project, their sources and their lifecycle state (compare-and-set)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, select, update

from clinreason.domain.lifecycle import ItemState, check_transition
from clinreason.domain.messages import N_
from clinreason.domain.records import Item
from clinreason.store.common import StaleStateError, now
from clinreason.store.decisions import add_event
from clinreason.store.hot import Hot
from clinreason.store.tables import events, extra_reviewer_requests, item_revisions, item_sources, items

_ITEM_FIELDS = ("id", "project_id", "question", "answer_labels", "language", "state", "answer_text", "specialty",
                "context", "reference_explanation", "content_hash", "strikes", "auto_retries", "flag_reason",
                "fail_reason", "claimed_by", "claimed_until", "created_at", "updated_at")


def item_from_row(row: RowMapping | dict[str, Any]) -> Item:
    fields = {k: row[k] for k in _ITEM_FIELDS}
    fields["answer_labels"] = list(fields["answer_labels"] or [])
    fields["strikes"] = int(fields["strikes"] or 0)
    fields["auto_retries"] = int(fields["auto_retries"] or 0)
    return Item(options=[(str(label), str(text)) for label, text in (row["options"] or [])],
                meta=dict(row["meta"] or {}), **fields)


# the review path's statements, built once (SQLAlchemy's compiled cache then does the rest)
_GET_ITEM = Hot(select(items).where(items.c.id == bindparam("item_id"), items.c.project_id == bindparam("project_id")))
_LOCK_ITEM = Hot(select(items).where(items.c.id == bindparam("item_id")).with_for_update(key_share=True))
_CLAIM_ITEM = Hot(select(items.c.id).where(items.c.id == bindparam("item_id"), items.c.state == bindparam("state")) \
    .with_for_update(skip_locked=True, key_share=True))
#: compare-and-set: SET takes the other parameters' names (state, updated_at, strikes ...)
_MOVE_ITEM = Hot(update(items).where(items.c.id == bindparam("b_item_id"), items.c.state == bindparam("b_expected")) \
    .returning(items.c.project_id))
_REVIEW = ItemState.IN_REVIEW.value
_requests = extra_reviewer_requests.c
#: an item leaving review closes its extra-reviewer requests, one coming back reopens them (migration 0013)
_CLOSE_REQUESTS = Hot(update(extra_reviewer_requests).where(
    _requests.project_id == bindparam("b_project_id"), _requests.item_id == bindparam("b_item_id"),
    _requests.closed_at.is_(None)).values(closed_at=bindparam("b_at")))
_REOPEN_REQUESTS = Hot(update(extra_reviewer_requests).where(
    _requests.project_id == bindparam("b_project_id"), _requests.item_id == bindparam("b_item_id"),
    _requests.closed_at.is_not(None)).values(closed_at=None))


def _follow_review(conn: Connection, *, project_id: int, item_ids: list[str], expected: str, target: str,
                   at: Any) -> None:
    """Keep the items' extra-reviewer requests open exactly while the items are in review."""
    if (expected == _REVIEW) == (target == _REVIEW):
        return
    params = [{"b_project_id": project_id, "b_item_id": item_id, **({"b_at": at} if expected == _REVIEW else {})}
              for item_id in item_ids]
    hot = _CLOSE_REQUESTS if expected == _REVIEW else _REOPEN_REQUESTS
    if len(params) == 1:
        hot.run(conn, params[0])
    else:  # a batch of moves: one executemany
        conn.execute(hot.statement, params)


def get_item(conn: Connection, *, project_id: int, item_id: str) -> Item | None:
    row = _GET_ITEM.run(conn, {"item_id": item_id, "project_id": project_id}).mappings().first()
    return item_from_row(row) if row else None


def items_by_id(conn: Connection, *, item_ids: list[str]) -> dict[str, Item]:
    """Item id -> item, for the ids that exist (one query)."""
    if not item_ids:
        return {}
    rows = conn.execute(select(items).where(items.c.id.in_(item_ids))).mappings()
    return {r["id"]: item_from_row(r) for r in rows}


def lock_item(conn: Connection, *, item_id: str) -> Item | None:
    """The item row, locked for the rest of the transaction (FOR NO KEY UPDATE on PostgreSQL)."""
    row = _LOCK_ITEM.run(conn, {"item_id": item_id}).mappings().first()
    return item_from_row(row) if row else None


def claim_item_row(conn: Connection, *, item_id: str, state: str) -> bool:
    """Lock the item if it is still in `state`, skipping it when another transaction holds it."""
    return _CLAIM_ITEM.run(conn, {"item_id": item_id, "state": state}).first() is not None


def item_state(conn: Connection, *, item_id: str) -> str | None:
    return conn.execute(select(items.c.state).where(items.c.id == item_id)).scalar()


def flag_reason(conn: Connection, *, item_id: str) -> str | None:
    """Why the item was sent to experts with a warning, or None."""
    reason = conn.execute(select(items.c.flag_reason).where(items.c.id == item_id)).scalar()
    return str(reason) if reason is not None else None


def items_in_state(conn: Connection, *, project_id: int, state: str, limit: int | None = None) -> list[Item]:
    query = (select(items).where(items.c.project_id == project_id, items.c.state == state)
             .order_by(items.c.updated_at, items.c.id))
    if limit is not None:
        query = query.limit(limit)
    return [item_from_row(r) for r in conn.execute(query).mappings()]


#: one state's items in queue order (ix_items_queue_order); `project_items` merges a few states' lists
_ITEMS_IN_STATE = Hot(select(items).where(items.c.project_id == bindparam("project_id"),
                                          items.c.state == bindparam("state")).order_by(items.c.created_at, items.c.id))


def project_items(conn: Connection, *, project_id: int, states: list[str] | None = None) -> list[Item]:
    """The project's items (those in `states` only, when given), oldest first (created_at, then id)."""
    if states is not None and len(states) <= 4:
        found = [item_from_row(r) for state in dict.fromkeys(states)
                 for r in _ITEMS_IN_STATE.run(conn, {"project_id": project_id, "state": str(state)}).mappings()]
        if len(states) > 1:
            found.sort(key=lambda it: (it.created_at, it.id))
        return found
    query = select(items).where(items.c.project_id == project_id)
    if states is not None:
        query = query.where(items.c.state.in_(states))
    return [item_from_row(r) for r in conn.execute(query.order_by(items.c.created_at, items.c.id)).mappings()]


def item_source_rows(conn: Connection, *, item_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(item_sources).where(item_sources.c.item_id == item_id).order_by(item_sources.c.id))
    return [dict(r) for r in rows.mappings()]


_SET_STRIKES = Hot(update(items).where(items.c.id == bindparam("b_item_id")))


def set_strikes(conn: Connection, *, item_id: str, strikes: int) -> None:
    """Record a failed round that does not move the item (an edit: the new version is reviewed next)."""
    _SET_STRIKES.run(conn, {"b_item_id": item_id, "strikes": strikes, "updated_at": now()})


def transition_item(conn: Connection, *, item_id: str, expected: ItemState | str, target: ItemState | str,
                    actor: str, detail: dict[str, Any] | None = None, **values: Any) -> None:
    """Compare-and-set: move the item only if it is still in `expected`; write the Event in the same
    transaction. Raises TransitionError for a move the lifecycle forbids, StaleStateError when the
    row moved meanwhile (or does not exist)."""
    reason = check_transition(expected, target)
    expected_s, target_s = str(ItemState(expected)), str(ItemState(target))
    at = now()
    project_id = _MOVE_ITEM.run(conn, {"b_item_id": item_id, "b_expected": expected_s, "state": target_s,
                                           "updated_at": at, **values}).scalar()
    if project_id is None:
        row = conn.execute(select(items.c.state, items.c.project_id).where(items.c.id == item_id)).first()
        if row is None:
            raise StaleStateError(N_("item {item_id} does not exist"), {"item_id": item_id})
        raise StaleStateError(N_("item {item_id} is '{state}', not '{expected}': it was moved by someone else"),
                              {"item_id": item_id, "state": row.state, "expected": expected_s})
    _follow_review(conn, project_id=project_id, item_ids=[item_id], expected=expected_s, target=target_s, at=at)
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
    _follow_review(conn, project_id=project_id, item_ids=item_ids, expected=expected_s, target=target_s, at=ts)
    details = details or {}
    conn.execute(events.insert(), [
        {"project_id": project_id, "item_id": item_id, "kind": "item.transition", "actor": actor,
         "before": {"state": expected_s}, "after": {"state": target_s},
         "detail": {"reason": reason, **details.get(item_id, {})}, "at": ts} for item_id in item_ids])
    return True


_COUNT_IN_STATE = Hot(select(func.count()).select_from(items).where(
    items.c.project_id == bindparam("project_id"), items.c.state == bindparam("state")))


def count_in_state(conn: Connection, *, project_id: int, state: str) -> int:
    return int(_COUNT_IN_STATE.run(conn, {"project_id": project_id, "state": state}).scalar_one())


def project_item_counts(conn: Connection) -> dict[int, int]:
    """Project id -> its number of items (projects without items are absent)."""
    return {int(pid): int(n) for pid, n in
            conn.execute(select(items.c.project_id, func.count()).group_by(items.c.project_id)).all()}


#: the parts of an item an admin may rewrite (the gold answer's labels are not among them)
EDITABLE_CONTENT = ("question", "options", "answer_text", "context", "reference_explanation")


def replace_content(conn: Connection, *, item_id: str, actor: str, reason: str, changes: dict[str, Any]) -> int:
    """Rewrite an item's text (a subset of EDITABLE_CONTENT; options as [[label, text], ...] with the
    labels unchanged), keeping what it replaces as the next row of `item_revisions`. Returns the number of
    that revision (1: the content as imported). The content hash stays the imported content's, so a
    re-import of the original bank still recognises the item and adds nothing."""
    unknown = set(changes) - set(EDITABLE_CONTENT)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))} (editable: {', '.join(EDITABLE_CONTENT)})")
    row = conn.execute(select(items).where(items.c.id == item_id).with_for_update()).mappings().first()
    if row is None:
        raise StaleStateError(f"item {item_id} does not exist")
    revision = int(conn.execute(select(func.count()).select_from(item_revisions)
                                .where(item_revisions.c.item_id == item_id)).scalar_one()) + 1
    ts = now()
    conn.execute(item_revisions.insert().values(
        item_id=item_id, revision=revision, question=row["question"], options=row["options"],
        answer_text=row["answer_text"], context=row["context"], reference_explanation=row["reference_explanation"],
        replaced_by=actor, reason=reason, replaced_at=ts))
    conn.execute(update(items).where(items.c.id == item_id).values(updated_at=ts, **changes))
    return revision


def content_revisions(conn: Connection, *, item_id: str) -> list[dict[str, Any]]:
    """The item's earlier contents, oldest first (each with who replaced it, when and why)."""
    rows = conn.execute(select(item_revisions).where(item_revisions.c.item_id == item_id)
                        .order_by(item_revisions.c.revision)).mappings()
    return [{k: r[k] for k in ("revision", "question", "options", "answer_text", "context", "reference_explanation",
                               "replaced_by", "reason", "replaced_at")} for r in rows]
