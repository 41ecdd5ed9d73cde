"""The review queue: which versions a reviewer may be leased now, best first (`candidates`), and how many
they could still be leased (`waiting_for`). Read-only; the lease itself is written by store/reviews.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, exists, func, literal_column, select

from clinreason.domain.lifecycle import ItemState
from clinreason.store.hot import Hot
from clinreason.store.tables import assignments, extra_reviewer_requests, items, rationales, reviews

REVIEWABLE_STATE = ItemState.IN_REVIEW.value


@dataclass(frozen=True, slots=True)
class Candidate:
    """A version a reviewer could be leased."""

    id: str  # the rationale id
    item_id: str
    version: int


#: the statuses of a lease that keep its version from its reviewer, written into the SQL (constants: no parameter)
_HELD_STATUSES: list[Any] = [literal_column(f"'{status}'") for status in ("open", "submitted", "released")]


def _candidate_query() -> Select[Any]:
    """The current versions of items (joined as `items`) this reviewer may take (bind parameters: now,
    reviewer_id, author, overlap)."""
    at: Any = bindparam("now")
    me: Any = bindparam("reviewer_id")
    later = rationales.alias("later")
    done = select(func.count()).select_from(reviews).where(reviews.c.rationale_id == rationales.c.id)
    live = select(func.count()).select_from(assignments).where(
        assignments.c.rationale_id == rationales.c.id, assignments.c.status == "open", assignments.c.expires_at > at)
    held = exists().where(assignments.c.rationale_id == rationales.c.id, assignments.c.reviewer_id == me,
                          assignments.c.status.in_(_HELD_STATUSES))
    reviewed = exists().where(reviews.c.rationale_id == rationales.c.id, reviews.c.reviewer_id == me)
    return (
        select(rationales.c.id, rationales.c.item_id, rationales.c.version)
        .join(items, items.c.id == rationales.c.item_id)
        .where(~exists().where(later.c.item_id == rationales.c.item_id, later.c.version > rationales.c.version),
               rationales.c.author != bindparam("author"), ~held, ~reviewed,
               done.scalar_subquery() + live.scalar_subquery() < bindparam("overlap"))
    )


@lru_cache(maxsize=1)
def _one_candidate_statement() -> Hot:
    """The single version `rationale_id`, if this reviewer may take it. Built once with bind parameters,
    so it hits SQLAlchemy's compiled cache."""
    return Hot(_candidate_query().where(rationales.c.id == bindparam("rationale_id"),
                                        items.c.project_id == bindparam("project_id"), items.c.state == REVIEWABLE_STATE))


#: the queue's three specialty ranks, best first: the reviewer's specialties, items without one, the rest
_WANTED, _UNSET, _OTHER = "wanted", "unset", "other"


def _stream(query: Select[Any], table: Any, stream: str) -> Select[Any]:
    """`query` over `table` (items or an alias) restricted to the project's in-review items of one
    specialty rank, in queue order (created_at, then id): read in the order of an index
    (ix_items_queue_specialty for one specialty and for none, ix_items_queue_order for the rest)."""
    spec = func.lower(table.c.specialty)
    query = query.where(table.c.project_id == bindparam("project_id"), table.c.state == REVIEWABLE_STATE)
    if stream == _WANTED:
        query = query.where(spec == bindparam("specialty"))
    elif stream == _UNSET:
        query = query.where(spec.is_(None))
    elif stream == _OTHER:
        query = query.where(spec.is_not(None))
    else:  # the rest, when the reviewer has specialties
        query = query.where(spec.is_not(None), spec.not_in(bindparam("wanted", expanding=True)))
    return query.order_by(table.c.created_at, table.c.id)


@lru_cache(maxsize=4)
def _edge_statement(stream: str) -> Hot:
    """The stream's item at position `last` (0-based), when it has that many: whether a window ending
    there was full."""
    return Hot(_stream(select(items.c.created_at, items.c.id), items, stream).limit(1).offset(bindparam("last")))


@lru_cache(maxsize=4)
def _window_statement(stream: str) -> Hot:
    """In one statement: of one window of the stream (`window` items after the first `skip`), the first
    `limit` versions this reviewer may take, in queue order, each with its item's created_at, and beside
    them the key of the window's last item (NULL when the window is not full). Built once per stream
    with bind parameters, so a window costs its size, not the size of the queue."""
    w = items.alias("w")
    window = _stream(select(w.c.id), w, stream).limit(bindparam("window")).offset(bindparam("skip"))
    edge = _stream(select(w.c.created_at, w.c.id), w, stream).limit(1).offset(bindparam("last")).subquery("edge")
    return Hot(_candidate_query()
               .add_columns(items.c.created_at,
                            select(edge.c.created_at).scalar_subquery().label("last_created"),
                            select(edge.c.id).scalar_subquery().label("last_id"))
               .where(rationales.c.item_id.in_(window))
               .order_by(items.c.created_at, items.c.id).limit(bindparam("limit")))


#: the first window's size: for one candidate (a lease on SQLite) a few items, since the oldest waiting items
#: usually have a free slot and every item of a window costs its subqueries; for a list of candidates
#: (PostgreSQL tries several in turn) a larger one. Windows double from there.
FIRST_WINDOW_ONE, FIRST_WINDOW_MANY = 4, 64


def _first_candidates(conn: Connection, stream: str, params: dict[str, Any]
                      ) -> tuple[list[tuple[Any, Candidate]], Any]:
    """The candidates (at most `limit`) of the first window of this stream that has any, as
    ((created_at, item id), Candidate) in queue order, and the key of the window's last item when the
    stream may go on after it (None when the stream ended). Windows grow (4 or 64, then doubling) until one
    has a candidate or the stream ends."""
    skip, window = 0, FIRST_WINDOW_ONE if params["limit"] == 1 else FIRST_WINDOW_MANY
    while True:
        bounds = {**params, "skip": skip, "window": window, "last": skip + window - 1}
        found = _window_statement(stream).run(conn, bounds).all()
        if found:
            edge = found[0]
            return (sorted((((r.created_at, r.item_id), Candidate(r.id, r.item_id, r.version)) for r in found),
                           key=lambda pair: pair[0]),
                    (edge.last_created, edge.last_id) if edge.last_id is not None else None)
        if _edge_statement(stream).run(conn, bounds).first() is None:
            return [], None  # the window was the stream's last (or it is empty)
        skip, window = skip + window, window * 2


def candidates(conn: Connection, *, project_id: int, reviewer_id: int, author: str, specialties: tuple[str, ...],
               overlap: int, at: datetime, limit: int, rationale_id: str | None = None) -> list[Candidate]:
    """Versions this reviewer may take now, best first: the current version of an in-review item with
    fewer than `overlap` reviews + live leases, not written, held, given back or reviewed by them. Best is
    the reviewer's specialty (matched without case), then items without a specialty, then the rest; within
    each, the oldest item first (created_at, then id). At most `limit`, from the first window that has any."""
    wanted = sorted({s.strip().lower() for s in specialties if s.strip()})
    params = {"now": at, "reviewer_id": reviewer_id, "author": author, "project_id": project_id, "limit": limit,
              "overlap": overlap, "wanted": wanted}
    if rationale_id is not None:
        rows = _one_candidate_statement().run(conn, {**params, "rationale_id": rationale_id}).all()
        return [Candidate(r.id, r.item_id, r.version) for r in rows]
    ranks: list[list[tuple[str, dict[str, Any]]]] = [
        [(_WANTED, {"specialty": s}) for s in wanted],
        [(_UNSET, {})],
        [("rest" if wanted else _OTHER, {})],
    ]
    for streams in ranks:
        found: list[tuple[Any, Candidate]] = []
        horizons = []
        for stream, extra in streams:
            cands, horizon = _first_candidates(conn, stream, {**params, **extra})
            found += cands
            if horizon is not None:
                horizons.append(horizon)
        if found:
            # specialties are disjoint streams: merge them in queue order, up to where every stream was read
            # (a stream read only to an earlier point may hide better candidates after it)
            cutoff = min(horizons) if len(streams) > 1 and horizons else None
            ordered = sorted(found, key=lambda pair: pair[0])
            return [cand for key, cand in ordered if cutoff is None or key <= cutoff][:limit]
    return []


def waiting_for(conn: Connection, *, project_id: int, reviewer_id: int, author: str, specialties: tuple[str, ...],
                overlap: int, at: datetime) -> int:
    """In-review items whose current version this reviewer could still be leased (the rules of `candidates`:
    not written, held, given back or reviewed by them, and fewer reviews + live leases than `overlap` plus
    the extra reviewers consensus asked for), counting only items of one of `specialties` (matched without
    case) when any are given."""
    later = rationales.alias("later")
    done = select(func.count()).select_from(reviews).where(reviews.c.rationale_id == rationales.c.id)
    live = select(func.count()).select_from(assignments).where(
        assignments.c.rationale_id == rationales.c.id, assignments.c.status == "open", assignments.c.expires_at > at)
    extra = select(func.count()).select_from(extra_reviewer_requests).where(
        extra_reviewer_requests.c.rationale_id == rationales.c.id)
    held = exists().where(assignments.c.rationale_id == rationales.c.id, assignments.c.reviewer_id == reviewer_id,
                          assignments.c.status.in_(["open", "submitted", "released"]))
    reviewed = exists().where(reviews.c.rationale_id == rationales.c.id, reviews.c.reviewer_id == reviewer_id)
    query = (
        select(func.count()).select_from(items.join(rationales, rationales.c.item_id == items.c.id))
        .where(items.c.project_id == project_id, items.c.state == REVIEWABLE_STATE,
               ~exists().where(later.c.item_id == rationales.c.item_id, later.c.version > rationales.c.version),
               rationales.c.author != author, ~held, ~reviewed,
               done.scalar_subquery() + live.scalar_subquery() < overlap + extra.scalar_subquery())
    )
    wanted = sorted({s.strip().lower() for s in specialties if s.strip()})
    if wanted:
        query = query.where(func.lower(items.c.specialty).in_(wanted))
    return int(conn.execute(query).scalar_one())
