"""The kept review scan of a project (`scan_states`): load it, save it only if nobody moved it meanwhile, and
read what arrived since its watermarks. Reviews and decisions are immutable and append-only (migration
0004), so what a stored state counted is still in the database; `analytics.kept` does the arithmetic."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, cast, func, inspect, select, update

from clinreason.store.common import aware, dialect_insert, now
from clinreason.store.tables import decisions, items, reviews, scan_states

#: rationale ids per IN (...) list
ID_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredState:
    project_id: int
    rubric_key: str
    format: int
    revision: int
    reviews_mark: datetime | None
    decisions_mark: datetime | None
    body: str  # what analytics.kept.encode wrote


@dataclass(frozen=True, slots=True)
class Arrival:
    """A review (string id, its version) or a decision (integer id, its item) and when it was created."""

    id: Any
    key: str
    created_at: datetime


def available(conn: Connection) -> bool:
    """Whether the schema has `scan_states` (migration 0012): a database not upgraded yet reads by full scans."""
    return inspect(conn).has_table(scan_states.name)


def load(conn: Connection, *, project_id: int) -> StoredState | None:
    row = conn.execute(select(scan_states).where(scan_states.c.project_id == project_id)).first()
    if row is None:
        return None
    return StoredState(project_id=row.project_id, rubric_key=row.rubric_key, format=int(row.format),
                       revision=int(row.revision), reviews_mark=aware(row.reviews_mark),
                       decisions_mark=aware(row.decisions_mark), body=str(row.body))


def save(conn: Connection, *, project_id: int, rubric_key: str, format: int, body: str,
         reviews_mark: datetime | None, decisions_mark: datetime | None, expected_revision: int | None) -> bool:
    """Store a state built from revision `expected_revision` (None: from no stored state). Written only if
    the stored revision is still that one (a concurrent writer's newer state is not overwritten); True if
    written."""
    values = {"rubric_key": rubric_key, "format": format, "body": body, "reviews_mark": reviews_mark,
              "decisions_mark": decisions_mark, "updated_at": now()}
    if expected_revision is None:
        stmt = dialect_insert(conn, scan_states).values(project_id=project_id, revision=1, **values)
        # RETURNING, not rowcount: what a driver reports for an ON CONFLICT DO NOTHING that did nothing varies
        inserted = conn.execute(stmt.on_conflict_do_nothing(index_elements=["project_id"])
                                .returning(scan_states.c.project_id)).first()
        return inserted is not None
    else:
        result = conn.execute(update(scan_states)
                              .where(scan_states.c.project_id == project_id,
                                     scan_states.c.revision == expected_revision)
                              .values(revision=expected_revision + 1, **values))
    return bool(result.rowcount)


def discard(conn: Connection, *, project_id: int) -> None:
    conn.execute(scan_states.delete().where(scan_states.c.project_id == project_id))


def has_reviews(conn: Connection, *, project_id: int, at_least: int) -> bool:
    """Whether the project has at least `at_least` reviews (counted no further than that)."""
    some = (select(reviews.c.id).select_from(reviews.join(items, items.c.id == reviews.c.item_id))
            .where(items.c.project_id == project_id).limit(at_least).subquery())
    return int(conn.execute(select(func.count()).select_from(some)).scalar_one()) >= at_least


def reviews_since(conn: Connection, *, project_id: int, after: datetime | None) -> list[Arrival]:
    """The project's reviews created after `after` (all where None): id, version, created_at."""
    return _since(conn, project_id, reviews, reviews.c.rationale_id, after)


def decisions_since(conn: Connection, *, project_id: int, after: datetime | None) -> list[Arrival]:
    """The project's decisions created after `after` (all where None): id, item, created_at."""
    return _since(conn, project_id, decisions, decisions.c.item_id, after)


def _since(conn: Connection, project_id: int, table: Any, key: Any, after: datetime | None) -> list[Arrival]:
    if after is None:
        rows = conn.execute(select(table.c.id, key, table.c.created_at)
                            .select_from(table.join(items, items.c.id == table.c.item_id))
                            .where(items.c.project_id == project_id)).all()
        return [Arrival(id=r[0], key=r[1], created_at=_aware(r[2])) for r in rows]
    # the rows since the watermark by the created_at index (migration 0012), then kept if of this project:
    # joined to items first, a planner without statistics walks every item of the project instead
    found = conn.execute(select(table.c.id, key, table.c.created_at, table.c.item_id)
                         .where(table.c.created_at > after)).all()
    wanted = sorted({r[3] for r in found})
    mine: set[str] = set()
    for lo in range(0, len(wanted), ID_CHUNK):
        # by the primary key alone, the project compared here: with `AND project_id = ?` in the query SQLite's
        # planner takes an index led by project_id and walks every item of the project for each chunk (0.4 s
        # per read at 200k items, seconds at 1M)
        mine.update(i for i, p in conn.execute(select(items.c.id, items.c.project_id)
                                               .where(items.c.id.in_(wanted[lo:lo + ID_CHUNK])))
                    if p == project_id)
    return [Arrival(id=r[0], key=r[1], created_at=_aware(r[2])) for r in found if r[3] in mine]


def reviewed_versions_of_items(conn: Connection, item_ids: Iterable[str]) -> set[str]:
    """The versions that have reviews, of these items."""
    ids = sorted(set(item_ids))
    out: set[str] = set()
    for lo in range(0, len(ids), ID_CHUNK):
        out.update(r[0] for r in conn.execute(select(reviews.c.rationale_id).distinct()
                                               .where(reviews.c.item_id.in_(ids[lo:lo + ID_CHUNK]))))
    return out


def version_rows(conn: Connection, rationale_ids: Iterable[str]) -> Iterator[tuple[Any, ...]]:
    """The reviews of these versions as `stats.rated_review_rows` gives them (rationale id, reviewer id,
    verdict, scores text, seconds, steps text, decision kind, accepted version id), followed by the review's
    id and created_at and the decision's id and created_at; by version, then reviewer."""
    ids = sorted(set(rationale_ids))
    for lo in range(0, len(ids), ID_CHUNK):
        stmt = (
            select(reviews.c.rationale_id, reviews.c.reviewer_id, reviews.c.verdict, cast(reviews.c.scores, Text),
                   reviews.c.seconds_spent, cast(reviews.c.steps, Text), decisions.c.kind, decisions.c.rationale_id,
                   reviews.c.id, reviews.c.created_at, decisions.c.id, decisions.c.created_at)
            .select_from(reviews.outerjoin(decisions, decisions.c.item_id == reviews.c.item_id))
            .where(reviews.c.rationale_id.in_(ids[lo:lo + ID_CHUNK]))
            .order_by(reviews.c.rationale_id, reviews.c.reviewer_id)
        )
        for row in conn.execute(stmt):
            yield (*row[:9], _aware(row[9]), row[10], None if row[11] is None else _aware(row[11]))


def _aware(value: Any) -> datetime:
    found = aware(value)
    assert found is not None
    return found
