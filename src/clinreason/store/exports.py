"""The export's read model: accepted items streamed in order, and per chunk their sources, versions'
provenance, review scores (with step marks) and texts. Rows are light named tuples (an export streams
millions of them)."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, Row, exists, func, select

from clinreason.store.tables import decisions, item_sources, items, rationales, reviews


def accepted_items(conn: Connection, *, project_id: int, kinds: list[str], source: str | None, light: bool,
                   chunk_size: int) -> Iterator[Row[Any]]:
    """Accepted items decided by one of `kinds`, ordered by id, with their decision's kind and version
    (`light`: only id and specialty besides)."""
    cols: list[Any] = [items.c.id, items.c.specialty, decisions.c.kind, decisions.c.rationale_id]
    if not light:
        cols += [items.c.question, items.c.context, items.c.options, items.c.answer_labels, items.c.answer_text,
                 items.c.language]
    stmt = (select(*cols).select_from(items.join(decisions, decisions.c.item_id == items.c.id))
            .where(items.c.project_id == project_id, items.c.state == "accepted", decisions.c.kind.in_(kinds),
                   decisions.c.rationale_id.is_not(None)).order_by(items.c.id))
    if source:
        stmt = stmt.where(exists(select(item_sources.c.id).where(item_sources.c.item_id == items.c.id,
                                                                 item_sources.c.source == source)))
    yield from conn.execute(stmt.execution_options(yield_per=chunk_size))


def sources_of(conn: Connection, *, item_ids: Sequence[str]) -> Sequence[Any]:
    return conn.execute(select(item_sources.c.item_id, item_sources.c.source, item_sources.c.subject,
                               item_sources.c.license).where(item_sources.c.item_id.in_(item_ids))
                        .order_by(item_sources.c.item_id, item_sources.c.id)).all()


def version_provenance(conn: Connection, *, item_ids: Sequence[str]) -> Sequence[Any]:
    return conn.execute(select(rationales.c.id, rationales.c.item_id, rationales.c.version, rationales.c.origin,
                               rationales.c.author, rationales.c.model, rationales.c.prompt_hash,
                               rationales.c.params, rationales.c.seed, rationales.c.parent_version)
                        .where(rationales.c.item_id.in_(item_ids))
                        .order_by(rationales.c.item_id, rationales.c.version)).all()


def review_scores(conn: Connection, *, rationale_ids: Sequence[str]) -> Sequence[Any]:
    """The versions' reviews: scores, verdict, step marks (the `steps` JSON, None where none), comments, seconds
    spent and edited text, by reviewer."""
    return conn.execute(select(reviews.c.rationale_id, reviews.c.reviewer_id, reviews.c.verdict, reviews.c.scores,
                               reviews.c.id, reviews.c.steps, reviews.c.comments, reviews.c.seconds_spent,
                               reviews.c.edited_text)
                        .where(reviews.c.rationale_id.in_(rationale_ids))
                        .order_by(reviews.c.rationale_id, reviews.c.reviewer_id)).all()


def version_texts(conn: Connection, *, rationale_ids: Sequence[str]) -> Sequence[Any]:
    return conn.execute(select(rationales.c.id, rationales.c.steps, rationales.c.final_answer, rationales.c.text)
                        .where(rationales.c.id.in_(rationale_ids))).all()


def drafting_provenance(conn: Connection, *, project_id: int) -> Sequence[Any]:
    """(origin, model, prompt hash, versions, tokens) of the project's model-written versions."""
    return conn.execute(
        select(rationales.c.origin, rationales.c.model, rationales.c.prompt_hash, func.count(),
               func.coalesce(func.sum(rationales.c.prompt_tokens + rationales.c.completion_tokens), 0))
        .select_from(rationales.join(items, items.c.id == rationales.c.item_id))
        .where(items.c.project_id == project_id, rationales.c.origin.in_(["generated", "regenerated"]))
        .group_by(rationales.c.origin, rationales.c.model, rationales.c.prompt_hash)
        .order_by(rationales.c.model, rationales.c.prompt_hash, rationales.c.origin)).all()
