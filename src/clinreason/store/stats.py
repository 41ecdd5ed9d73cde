"""The read model of quality evidence: what agreement, reviewer and process statistics, the dashboard charts
and the dataset card read. Reviews stream in rationale order (constant memory at any size); everything else
is an SQL aggregate returned as small typed rows. The computation lives in `clinreason.analytics`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, FromClause, Text, and_, case, cast, func, select

from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import DecisionKind
from clinreason.store.tables import (
    day_tallies,
    decisions,
    item_sources,
    item_tallies,
    items,
    rationales,
    reviews,
    source_tallies,
    users,
)

#: the decision kinds that accept an item (an exclusion does not)
ACCEPTED_KINDS: tuple[str, ...] = (DecisionKind.CONSENSUS.value, DecisionKind.ADJUDICATION.value)
#: reviews fetched per round trip while streaming
STREAM_ROWS = 5000

Breakdown = Literal["specialty", "source"]


@dataclass(frozen=True, slots=True)
class RatedReview:
    """The part of a review that agreement and reviewer statistics use (no comments or edited text), with
    the decision on its item: its kind and the version it accepted, None where the item is undecided."""

    rationale_id: str
    reviewer_id: int
    verdict: str
    scores: dict[str, Any]
    seconds_spent: float | None
    decision_kind: str | None
    decided_rationale_id: str | None
    #: the reviewer's step marks as (step number, "ok" | "error"), by step; empty when the review marked none
    step_verdicts: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AcceptedOrigin:
    """How many accepted items a decision kind accepted with a version of this origin."""

    kind: str
    origin: str
    items: int


@dataclass(frozen=True, slots=True)
class ItemBreakdown:
    """Items of one specialty (or source), and how many of them are accepted and excluded."""

    key: str
    items: int
    accepted: int
    excluded: int


@dataclass(frozen=True, slots=True)
class ReviewBreakdown:
    """Over the reviewed items of one specialty (or source): reviews, reviewed versions (rounds), and the
    rounds of the accepted items alone."""

    key: str
    reviews: int
    rounds: int
    accepted_rounds: int


@dataclass(frozen=True, slots=True)
class ItemGroup:
    """Items of one specialty that share a state, a decision (its kind; whether it names a version, and
    whether that version's row was found: `origin` is its origin), whether they have reviews, and a number of
    rounds (reviewed versions): how many such items and how many reviews they have in all."""

    specialty: str
    state: str
    decision_kind: str | None
    decided_version: bool
    version_found: bool
    origin: str | None
    reviewed: bool
    rounds: int
    items: int
    reviews: int


@dataclass(frozen=True, slots=True)
class DayCount:
    day: str  # YYYY-MM-DD
    count: int


def rated_reviews(conn: Connection, *, project_id: int, batch: int = STREAM_ROWS) -> Iterator[RatedReview]:
    """The project's reviews ordered by (rationale id, reviewer id), streamed `batch` rows at a time, so the
    reviews of one version arrive together."""
    stmt = (
        select(reviews.c.rationale_id, reviews.c.reviewer_id, reviews.c.verdict, reviews.c.scores,
               reviews.c.seconds_spent, reviews.c.steps, decisions.c.kind,
               decisions.c.rationale_id.label("accepted_id"))
        .select_from(reviews.join(items, items.c.id == reviews.c.item_id)
                     .outerjoin(decisions, decisions.c.item_id == reviews.c.item_id))
        .where(items.c.project_id == project_id)
        .order_by(reviews.c.rationale_id, reviews.c.reviewer_id)
    )
    for row in conn.execute(stmt.execution_options(yield_per=batch)):
        yield RatedReview(rationale_id=row.rationale_id, reviewer_id=row.reviewer_id, verdict=row.verdict,
                          scores=row.scores or {}, seconds_spent=row.seconds_spent, decision_kind=row.kind,
                          decided_rationale_id=row.accepted_id, step_verdicts=_step_verdicts(row.steps))


def rated_review_rows(conn: Connection, *, project_id: int, batch: int = STREAM_ROWS) -> Iterator[tuple[Any, ...]]:
    """What `rated_reviews` reads, as plain tuples (rationale id, reviewer id, verdict, scores, seconds spent,
    steps, decision kind, accepted version id) in the same order, with the two JSON columns as their stored
    text (decode them with `decode_json`): identical texts repeat a lot and are then decoded once."""
    stmt = (
        select(reviews.c.rationale_id, reviews.c.reviewer_id, reviews.c.verdict, cast(reviews.c.scores, Text),
               reviews.c.seconds_spent, cast(reviews.c.steps, Text), decisions.c.kind, decisions.c.rationale_id)
        .select_from(reviews.join(items, items.c.id == reviews.c.item_id)
                     .outerjoin(decisions, decisions.c.item_id == reviews.c.item_id))
        .where(items.c.project_id == project_id)
        .order_by(reviews.c.rationale_id, reviews.c.reviewer_id)
    )
    result = conn.execute(stmt.execution_options(yield_per=batch))
    for part in result.partitions():
        yield from part


def project_vote_rows(conn: Connection, *, project_id: int) -> list[tuple[str, str, str, str]]:
    """(rationale id, username, verdict, scores as stored JSON text) of every review of the project: what
    `reviews.project_votes` reads, from the same query and so in the same order, without decoding the
    scores row by row (identical texts are decoded once by the caller). On SQLite the rows come straight from
    the driver, inside the transaction `conn` began (the same snapshot): SQLAlchemy's per-row layer was half
    the cost of reading a million votes."""
    stmt = (select(reviews.c.rationale_id, users.c.username, reviews.c.verdict, cast(reviews.c.scores, Text))
            .join(users, users.c.id == reviews.c.reviewer_id).join(items, items.c.id == reviews.c.item_id)
            .where(items.c.project_id == project_id))
    if conn.dialect.name == "sqlite":
        if not conn.in_transaction():
            conn.begin()
        compiled = stmt.compile(dialect=conn.dialect)
        params = [compiled.params[name] for name in compiled.positiontup or ()]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            rows: list[tuple[str, str, str, str]] = cursor.execute(str(compiled), params).fetchall()
        finally:
            cursor.close()
        return rows
    result = conn.execute(stmt)
    return [(r[0], r[1], r[2], r[3]) for part in result.partitions(STREAM_ROWS) for r in part]


def decode_json(raw: Any) -> Any:
    """A JSON column read as text (None stays None)."""
    return None if raw is None else json.loads(raw)


def step_verdicts(stored: Any) -> tuple[tuple[int, str], ...]:
    """(step, verdict) of a review's stored marks, by step (see `RatedReview.step_verdicts`)."""
    return _step_verdicts(stored)


def _step_verdicts(stored: Any) -> tuple[tuple[int, str], ...]:
    """(step, verdict) of a review's stored marks (StepMark.to_dict form, validated when submitted)."""
    return tuple(sorted((int(m["step"]), str(m["verdict"])) for m in stored or ()))


def _accepted(project_id: int) -> ColumnElement[bool]:
    return and_(items.c.project_id == project_id, items.c.state == ItemState.ACCEPTED.value,
                decisions.c.kind.in_(ACCEPTED_KINDS), decisions.c.rationale_id.is_not(None))


def _accepted_join() -> FromClause:
    return items.join(decisions, decisions.c.item_id == items.c.id)


def accepted_count(conn: Connection, *, project_id: int) -> int:
    """Items accepted by consensus or adjudication with a version."""
    return int(conn.execute(select(func.count()).select_from(_accepted_join())
                            .where(_accepted(project_id))).scalar_one())


def accepted_rounds(conn: Connection, *, project_id: int) -> dict[int, int]:
    """Rounds (reviewed versions; 0 where none was reviewed) -> accepted items with that many, ascending."""
    per_item = (select(reviews.c.item_id, func.count(func.distinct(reviews.c.rationale_id)).label("rounds"))
                .group_by(reviews.c.item_id).subquery())
    rows = conn.execute(
        select(func.coalesce(per_item.c.rounds, 0).label("r"), func.count())
        .select_from(_accepted_join().outerjoin(per_item, per_item.c.item_id == items.c.id))
        .where(_accepted(project_id)).group_by("r").order_by("r")).all()
    return {int(r): int(n) for r, n in rows}


def accepted_origins(conn: Connection, *, project_id: int) -> list[AcceptedOrigin]:
    """Accepted items per (decision kind, origin of the accepted version)."""
    rows = conn.execute(
        select(decisions.c.kind, rationales.c.origin, func.count())
        .select_from(_accepted_join().join(rationales, rationales.c.id == decisions.c.rationale_id))
        .where(_accepted(project_id)).group_by(decisions.c.kind, rationales.c.origin))
    return [AcceptedOrigin(kind=kind, origin=origin, items=int(n)) for kind, origin, n in rows]


def _per_item_reviews() -> Any:
    """Reviews and rounds (distinct reviewed versions) per item, read from ix_reviews_item_id_rationale_id."""
    return (select(reviews.c.item_id, func.count().label("n_reviews"),
                   func.count(func.distinct(reviews.c.rationale_id)).label("rounds"))
            .group_by(reviews.c.item_id).subquery())


def item_groups(conn: Connection, *, project_id: int) -> list[ItemGroup]:
    """The project's items grouped by specialty ("(none)" where unset), state, decision, accepted version's
    origin and rounds, in one pass over the items (with their reviews per item, decision and decided version):
    what `accepted_count`, `accepted_rounds`, `accepted_origins` and the per-specialty `item_breakdown` and
    `review_breakdown` each read in a pass of their own, so that `ItemRollup` gives each of them."""
    per_item = _per_item_reviews()
    key = func.coalesce(items.c.specialty, "(none)").label("k")
    decided = decisions.c.rationale_id.is_not(None).label("decided")
    found = rationales.c.id.is_not(None).label("found")
    reviewed = per_item.c.item_id.is_not(None).label("reviewed")
    rounds = func.coalesce(per_item.c.rounds, 0).label("r")
    groups = (key, items.c.state, decisions.c.kind, decided, found, rationales.c.origin, reviewed, rounds)
    rows = conn.execute(
        select(*groups, func.count(), func.coalesce(func.sum(per_item.c.n_reviews), 0))
        .select_from(items.outerjoin(per_item, per_item.c.item_id == items.c.id)
                     .outerjoin(decisions, decisions.c.item_id == items.c.id)
                     .outerjoin(rationales, rationales.c.id == decisions.c.rationale_id))
        .where(items.c.project_id == project_id).group_by(*groups))
    return [ItemGroup(specialty=str(k), state=state, decision_kind=kind, decided_version=bool(dec),
                      version_found=bool(fnd), origin=origin, reviewed=bool(rev), rounds=int(r), items=int(n),
                      reviews=int(n_reviews))
            for k, state, kind, dec, fnd, origin, rev, r, n, n_reviews in rows]


def tallies_kept(conn: Connection) -> bool:
    """Whether this database keeps the item tallies (migration 0015's triggers: SQLite only, for now)."""
    if conn.dialect.name != "sqlite":
        return False
    return int(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                    "AND name = 'tally_reviews_insert'").scalar_one()) == 1


def kept_item_groups(conn: Connection, *, project_id: int) -> list[ItemGroup]:
    """What `item_groups` returns, read from `item_tallies` (one row per group: no pass over the items). The
    order of the groups is not part of either's contract."""
    t = item_tallies.c
    rows = conn.execute(select(t.specialty, t.state, t.decision_kind, t.decided, t.version_found, t.origin, t.rounds,
                               t.n_items, t.n_reviews).where(t.project_id == project_id, t.n_items != 0))
    return [ItemGroup(specialty=spec, state=state, decision_kind=kind or None, decided_version=bool(dec),
                      version_found=bool(fnd), origin=origin or None, reviewed=int(r) > 0, rounds=int(r),
                      items=int(n), reviews=int(n_reviews))
            for spec, state, kind, dec, fnd, origin, r, n, n_reviews in rows]


def kept_source_breakdowns(conn: Connection, *, project_id: int) -> tuple[list[ItemBreakdown], list[ReviewBreakdown]]:
    """What `item_breakdown(by="source")` and `review_breakdown(by="source")` return, read from
    `source_tallies`."""
    t = source_tallies.c
    by_source: dict[str, list[int]] = {}
    for source, state, r, n, n_reviews in conn.execute(
            select(t.source, t.state, t.rounds, t.n_items, t.n_reviews)
            .where(t.project_id == project_id, t.n_items != 0)):
        acc = state == ItemState.ACCEPTED.value
        e = by_source.setdefault(source, [0, 0, 0, 0, 0, 0, 0])  # items, acc, exc, reviewed, reviews, rounds, acc rnd
        e[0] += n
        e[1] += n if acc else 0
        e[2] += n if state == ItemState.EXCLUDED.value else 0
        if r > 0:
            e[3] += n
            e[4] += n_reviews
            e[5] += r * n
            e[6] += r * n if acc else 0
    keys = sorted(by_source)
    return ([ItemBreakdown(key=k, items=by_source[k][0], accepted=by_source[k][1], excluded=by_source[k][2])
             for k in keys],
            [ReviewBreakdown(key=k, reviews=by_source[k][4], rounds=by_source[k][5], accepted_rounds=by_source[k][6])
             for k in keys if by_source[k][3]])


class ItemRollup:
    """What the item-level aggregates below return, from the groups of `item_groups` (one query): equal to
    `accepted_count`, `accepted_rounds`, `accepted_origins`, `item_breakdown(by="specialty")` and
    `review_breakdown(by="specialty")` on the same rows."""

    def __init__(self, groups: list[ItemGroup]) -> None:
        self.groups = groups

    @staticmethod
    def _is_accepted(g: ItemGroup) -> bool:
        return g.state == ItemState.ACCEPTED.value and g.decision_kind in ACCEPTED_KINDS and g.decided_version

    def accepted_count(self) -> int:
        return sum(g.items for g in self.groups if self._is_accepted(g))

    def accepted_rounds(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for g in self.groups:
            if self._is_accepted(g):
                out[g.rounds] = out.get(g.rounds, 0) + g.items
        return dict(sorted(out.items()))

    def accepted_origins(self) -> list[AcceptedOrigin]:
        out: dict[tuple[str, str | None], int] = {}
        for g in self.groups:
            if self._is_accepted(g) and g.version_found and g.decision_kind is not None:
                key = (g.decision_kind, g.origin)
                out[key] = out.get(key, 0) + g.items
        return [AcceptedOrigin(kind=kind, origin=origin, items=n)  # type: ignore[arg-type]
                for (kind, origin), n in sorted(out.items(), key=lambda x: (x[0][0], x[0][1] or ""))]

    def item_breakdown(self) -> list[ItemBreakdown]:
        out: dict[str, list[int]] = {}
        for g in self.groups:
            entry = out.setdefault(g.specialty, [0, 0, 0])
            entry[0] += g.items
            entry[1] += g.items if g.state == ItemState.ACCEPTED.value else 0
            entry[2] += g.items if g.state == ItemState.EXCLUDED.value else 0
        return [ItemBreakdown(key=k, items=n, accepted=acc, excluded=exc) for k, (n, acc, exc) in sorted(out.items())]

    def review_breakdown(self) -> list[ReviewBreakdown]:
        out: dict[str, list[int]] = {}
        for g in self.groups:
            if not g.reviewed:
                continue
            entry = out.setdefault(g.specialty, [0, 0, 0])
            entry[0] += g.reviews
            entry[1] += g.rounds * g.items
            entry[2] += g.rounds * g.items if g.state == ItemState.ACCEPTED.value else 0
        return [ReviewBreakdown(key=k, reviews=n, rounds=r, accepted_rounds=acc) for k, (n, r, acc) in out.items()]


def _sole_project(conn: Connection, *, project_id: int) -> bool:
    """Whether this project holds every item of the database: then every review and decision is its own (each
    belongs to an item) and a count of them needs no join back to `items` (two counts from an index)."""
    mine = conn.execute(select(func.count()).select_from(items).where(items.c.project_id == project_id)).scalar_one()
    return int(conn.execute(select(func.count()).select_from(items)).scalar_one()) == int(mine)


def expert_seconds(conn: Connection, *, project_id: int) -> float:
    """Seconds the project's reviews took, all together."""
    return float(conn.execute(
        select(func.coalesce(func.sum(reviews.c.seconds_spent), 0.0))
        .select_from(reviews.join(items, items.c.id == reviews.c.item_id))
        .where(items.c.project_id == project_id)).scalar_one())


def _breakdown_key(by: Breakdown) -> tuple[ColumnElement[Any], FromClause]:
    if by == "specialty":
        return func.coalesce(items.c.specialty, "(none)"), items
    if by == "source":  # an item counts once under each distinct source (it may have several rows of one)
        pairs = select(item_sources.c.item_id, item_sources.c.source).distinct().subquery()
        return pairs.c.source, items.join(pairs, pairs.c.item_id == items.c.id)
    raise ValueError(f"unknown breakdown '{by}' (specialty|source)")


def item_breakdown(conn: Connection, *, project_id: int, by: Breakdown) -> list[ItemBreakdown]:
    """Items, accepted and excluded per specialty ("(none)" where unset) or per source, by key."""
    key, base = _breakdown_key(by)
    is_acc = case((items.c.state == ItemState.ACCEPTED.value, 1), else_=0)
    is_exc = case((items.c.state == ItemState.EXCLUDED.value, 1), else_=0)
    rows = conn.execute(
        select(key.label("k"), func.count(func.distinct(items.c.id)), func.sum(is_acc), func.sum(is_exc))
        .select_from(base).where(items.c.project_id == project_id).group_by("k").order_by("k"))
    return [ItemBreakdown(key=str(k), items=int(n), accepted=int(acc or 0), excluded=int(exc or 0))
            for k, n, acc, exc in rows]


def review_breakdown(conn: Connection, *, project_id: int, by: Breakdown) -> list[ReviewBreakdown]:
    """Reviews and rounds per specialty or source, over the items that have reviews."""
    key, base = _breakdown_key(by)
    per_item = (select(reviews.c.item_id, func.count().label("n_reviews"),
                       func.count(func.distinct(reviews.c.rationale_id)).label("rounds"))
                .group_by(reviews.c.item_id).subquery())
    rows = conn.execute(
        select(key.label("k"), func.sum(per_item.c.n_reviews), func.sum(per_item.c.rounds),
               func.sum(case((items.c.state == ItemState.ACCEPTED.value, per_item.c.rounds), else_=0)))
        .select_from(base.join(per_item, per_item.c.item_id == items.c.id))
        .where(items.c.project_id == project_id).group_by("k"))
    return [ReviewBreakdown(key=str(k), reviews=int(n_reviews or 0), rounds=int(rounds or 0),
                            accepted_rounds=int(accepted or 0)) for k, n_reviews, rounds, accepted in rows]


def _per_day(conn: Connection, column: ColumnElement[Any], joined: FromClause,
             where: list[ColumnElement[bool]]) -> list[DayCount]:
    day = func.date(column)
    rows = conn.execute(select(day.label("d"), func.count()).select_from(joined).where(*where)
                        .group_by(day).order_by(day))
    return [DayCount(day=str(d)[:10], count=int(n)) for d, n in rows if d is not None]


def _kept_per_day(conn: Connection, project_id: int, kind: str) -> list[DayCount]:
    t = day_tallies.c
    rows = conn.execute(select(t.day, t.n).where(t.project_id == project_id, t.kind == kind, t.n != 0)
                        .order_by(t.day))
    return [DayCount(day=str(d)[:10], count=int(n)) for d, n in rows]


def decisions_per_day(conn: Connection, *, project_id: int) -> list[DayCount]:
    """Consensus and adjudication decisions per calendar day, ascending (from `day_tallies` where the triggers
    keep it, migration 0015; else a pass over the decisions)."""
    if tallies_kept(conn):
        return _kept_per_day(conn, project_id, "accepted")
    return decisions_per_day_pass(conn, project_id=project_id)


def decisions_per_day_pass(conn: Connection, *, project_id: int) -> list[DayCount]:
    sole = _sole_project(conn, project_id=project_id)
    kinds = decisions.c.kind.in_(list(ACCEPTED_KINDS))
    if sole:
        return _per_day(conn, decisions.c.created_at, decisions, [kinds])
    return _per_day(conn, decisions.c.created_at, decisions.join(items, items.c.id == decisions.c.item_id),
                    [items.c.project_id == project_id, kinds])


def reviews_per_day(conn: Connection, *, project_id: int) -> list[DayCount]:
    """Reviews per calendar day, ascending (from `day_tallies` where the triggers keep it, migration 0015)."""
    if tallies_kept(conn):
        return _kept_per_day(conn, project_id, "review")
    return reviews_per_day_pass(conn, project_id=project_id)


def reviews_per_day_pass(conn: Connection, *, project_id: int) -> list[DayCount]:
    """Reviews per calendar day by a pass: in a database of one project, from the index on created_at alone."""
    if _sole_project(conn, project_id=project_id):
        return _per_day(conn, reviews.c.created_at, reviews, [])
    return _per_day(conn, reviews.c.created_at, reviews.join(items, items.c.id == reviews.c.item_id),
                    [items.c.project_id == project_id])
