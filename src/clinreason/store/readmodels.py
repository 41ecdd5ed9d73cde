"""Read models: the shapes that pages, reports and `status` read, each built in one place from the
record families (an item's whole story; the project's counts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select

from clinreason.domain.lifecycle import ItemState as S
from clinreason.domain.records import Decision, Review
from clinreason.store import stats as stats_store
from clinreason.store.decisions import get_decision, item_events, project_decisions
from clinreason.store.items import get_item, item_source_rows
from clinreason.store.privacy import hold_counts
from clinreason.store.rationales import checks_of, versions_of
from clinreason.store.tables import item_sources, item_tallies, items, rationales, reviews, source_tallies, users


def review_from_row(row: RowMapping | dict[str, Any]) -> Review:
    """A review row, with `reviewer` (username) and `version` when the query joined them."""
    return Review(id=row["id"], rationale_id=row["rationale_id"], item_id=row["item_id"],
                  reviewer_id=row["reviewer_id"], verdict=row["verdict"], scores=dict(row["scores"] or {}),
                  comments=dict(row["comments"] or {}), edited_text=row["edited_text"],
                  seconds_spent=row["seconds_spent"], rubric_version=row["rubric_version"],
                  assignment_id=row["assignment_id"], created_at=row["created_at"],
                  steps=list(row.get("steps") or []), reviewer=row.get("reviewer"), version=row.get("version"))


def item_reviews(conn: Connection, *, item_id: str) -> list[Review]:
    """Every review of the item, oldest first, with the reviewer's name and the version's number."""
    rows = conn.execute(
        select(reviews, users.c.username.label("reviewer"), rationales.c.version)
        .join(users, users.c.id == reviews.c.reviewer_id).join(rationales, rationales.c.id == reviews.c.rationale_id)
        .where(reviews.c.item_id == item_id).order_by(reviews.c.created_at, reviews.c.id)).mappings()
    return [review_from_row(r) for r in rows]


def project_reviews(conn: Connection, *, project_id: int) -> list[Review]:
    """Every review in the project (one query), by item then oldest first, with reviewer name and version."""
    rows = conn.execute(
        select(reviews, users.c.username.label("reviewer"), rationales.c.version)
        .join(users, users.c.id == reviews.c.reviewer_id).join(rationales, rationales.c.id == reviews.c.rationale_id)
        .join(items, items.c.id == reviews.c.item_id).where(items.c.project_id == project_id)
        .order_by(reviews.c.item_id, reviews.c.created_at, reviews.c.id)).mappings()
    return [review_from_row(r) for r in rows]


def item_history(conn: Connection, *, project_id: int, item_id: str) -> dict[str, Any] | None:
    """An item's whole story: the Item, its sources, versions (oldest first), checks, reviews, the
    Decision (or None) and every Event."""
    item = get_item(conn, project_id=project_id, item_id=item_id)
    if item is None:
        return None
    versions = versions_of(conn, item_id=item_id)
    return {
        "item": item,
        "sources": item_source_rows(conn, item_id=item_id),
        "versions": versions,
        "checks": checks_of(conn, rationale_ids=[v.id for v in versions]),
        "reviews": item_reviews(conn, item_id=item_id),
        "decision": get_decision(conn, item_id=item_id),
        "events": item_events(conn, item_id=item_id),
    }


def _sole_project(conn: Connection, *, project_id: int, n_items: int) -> bool:
    """Whether this project holds every item of the database: then every rationale and review is its own
    (each belongs to an item) and the counts need no join back to `items`."""
    return int(conn.execute(select(func.count()).select_from(items)).scalar_one()) == n_items


def status_counts(conn: Connection, *, project_id: int) -> dict[str, Any]:
    """The numbers `clinreason status --json` and GET /api/status print. The items by state and by source and
    the reviews are read from the tallies migration 0015's triggers keep (a pass over the rows where the schema
    predates them); every other figure is an SQL aggregate read from an index (migration 0010:
    ix_rationales_model_origin_tokens, ix_items_flagged); in a database of one project, without joining
    rationales to items."""
    by_state = {s.value: 0 for s in S}
    kept = stats_store.tallies_kept(conn)
    kept_reviews = 0
    if kept:  # the counts by state and of reviews from the tallies the triggers keep (migration 0015)
        for state, n, n_reviews in conn.execute(
            select(item_tallies.c.state, func.sum(item_tallies.c.n_items), func.sum(item_tallies.c.n_reviews))
            .where(item_tallies.c.project_id == project_id).group_by(item_tallies.c.state)
        ):
            by_state[state] = int(n)
            kept_reviews += int(n_reviews)
    else:
        for state, n in conn.execute(
            select(items.c.state, func.count()).where(items.c.project_id == project_id).group_by(items.c.state)
        ):
            by_state[state] = n
    n_items = sum(by_state.values())
    sole = _sole_project(conn, project_id=project_id, n_items=n_items)

    def mine(table: Any) -> Any:
        """`table` (one with an item_id) limited to this project's items, or as it is in a one-project database."""
        return table if sole else table.join(items, items.c.id == table.c.item_id)

    def in_project(query: Any) -> Any:
        return query if sole else query.where(items.c.project_id == project_id)

    if kept:
        by_source = {src: int(n) for src, n in conn.execute(
            select(source_tallies.c.source, func.sum(source_tallies.c.n_items))
            .where(source_tallies.c.project_id == project_id)
            .group_by(source_tallies.c.source).order_by(source_tallies.c.source))}
        n_reviews = kept_reviews
    else:
        by_source = {
            src: n
            for src, n in conn.execute(in_project(
                select(item_sources.c.source, func.count(func.distinct(item_sources.c.item_id)))
                .select_from(mine(item_sources))
                .group_by(item_sources.c.source)
                .order_by(item_sources.c.source)
            ))
        }
        n_reviews = conn.execute(in_project(select(func.count()).select_from(mine(reviews)))).scalar_one()
    # one pass over the rationales (their covering index) for the versions, the drafting models and the cost
    n_rationales, prompt, completion, cost = 0, 0, 0, 0.0
    by_model: dict[str, int] = {}
    for model, origin, n, p_tokens, c_tokens, usd in conn.execute(in_project(
        select(rationales.c.model, rationales.c.origin, func.count(), func.coalesce(func.sum(rationales.c.prompt_tokens), 0),
               func.coalesce(func.sum(rationales.c.completion_tokens), 0), func.coalesce(func.sum(rationales.c.cost), 0.0))
        .select_from(mine(rationales)).group_by(rationales.c.model, rationales.c.origin)
    )):
        n_rationales += int(n)
        prompt, completion, cost = prompt + int(p_tokens), completion + int(c_tokens), cost + float(usd)
        if origin in ("generated", "regenerated"):
            by_model[model or "unknown"] = by_model.get(model or "unknown", 0) + int(n)
    by_model = dict(sorted(by_model.items()))
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
        "held": by_state[S.HELD.value],  # items the privacy gate holds (nothing about them was sent)
        "privacy": hold_counts(conn, project_id=project_id),
        "progress": round(done / n_items, 4) if n_items else 0.0,
        "tokens": {"prompt": int(prompt), "completion": int(completion)},
        "cost_usd": round(float(cost), 6),
    }


@dataclass(frozen=True, slots=True)
class ProjectOutcome:
    """What the simulator measures of a finished project."""

    reviews: int
    expert_seconds: float
    #: item id -> its version ids
    versions: dict[str, list[str]]
    decisions: list[Decision]
    escalated: int


def simulation_outcome(conn: Connection, *, project_id: int) -> ProjectOutcome:
    in_project = items.c.project_id == project_id
    n_reviews, seconds = conn.execute(
        select(func.count(), func.coalesce(func.sum(reviews.c.seconds_spent), 0))
        .select_from(reviews.join(items, items.c.id == reviews.c.item_id)).where(in_project)).one()
    versions: dict[str, list[str]] = {}
    for item_id, rid in conn.execute(select(rationales.c.item_id, rationales.c.id)
                                     .join(items, items.c.id == rationales.c.item_id).where(in_project)
                                     .order_by(rationales.c.item_id, rationales.c.version)):
        versions.setdefault(item_id, []).append(rid)
    escalated = conn.execute(select(func.count()).where(in_project, items.c.state == S.ESCALATED.value)).scalar_one()
    return ProjectOutcome(reviews=int(n_reviews), expert_seconds=float(seconds), versions=versions,
                          decisions=project_decisions(conn, project_id=project_id), escalated=int(escalated))
