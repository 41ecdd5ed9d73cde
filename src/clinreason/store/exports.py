"""The export's read model: accepted items streamed in order, and per chunk their sources, versions'
provenance, review scores (with step marks) and texts. Rows are light named tuples (an export streams
millions of them)."""

from __future__ import annotations

import json
from collections import namedtuple
from functools import lru_cache
from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, Row, exists, func, select

from clinreason.store.common import select_in
from clinreason.store.tables import decisions, item_sources, items, rationales


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


def _decoded(conn: Connection, sql: str, keys: Sequence[str], fields: str, json_fields: str) -> list[Any]:
    """`sql` run for `keys` (bound as one parameter), as named tuples of `fields`; the `json_fields` among
    them decoded (SQLite hands JSON back as text, psycopg already decoded). One decoder, no per-value layer."""
    row_type = _row_type(fields)
    rows = select_in(conn, sql, list(keys))
    if conn.dialect.name == "postgresql" or not json_fields:
        return [row_type._make(r) for r in rows]
    names = fields.split()
    at = [names.index(f) for f in json_fields.split()]
    decode = _load
    out = []
    for r in rows:
        values = list(r)
        for i in at:
            if values[i] is not None:
                values[i] = decode(values[i])
        out.append(row_type._make(values))
    return out


_RAW = json.JSONDecoder().raw_decode


def _load(text: str) -> Any:
    """json.loads, without its whitespace scans for the compact JSON the store writes (anything else: loads)."""
    try:
        value, end = _RAW(text)
        if end == len(text):
            return value
    except ValueError:
        pass
    return json.loads(text)


@lru_cache(maxsize=None)
def _row_type(fields: str) -> Any:
    return namedtuple("ExportRow", fields)


def sources_of(conn: Connection, *, item_ids: Sequence[str]) -> Sequence[Any]:
    return _decoded(conn, "SELECT item_id, source, subject, license FROM item_sources WHERE item_id IN ({keys}) "
                          "ORDER BY item_id, id", item_ids, "item_id source subject license", "")


def version_provenance(conn: Connection, *, item_ids: Sequence[str]) -> Sequence[Any]:
    return _decoded(conn, "SELECT id, item_id, version, origin, author, model, prompt_hash, params, seed, "
                          "parent_version FROM rationales WHERE item_id IN ({keys}) ORDER BY item_id, version",
                    item_ids, "id item_id version origin author model prompt_hash params seed parent_version",
                    "params")


def review_scores(conn: Connection, *, rationale_ids: Sequence[str]) -> Sequence[Any]:
    """The versions' reviews: scores, verdict, step marks (the `steps` JSON, None where none), comments, seconds
    spent and edited text, by reviewer."""
    return _decoded(conn, "SELECT rationale_id, reviewer_id, verdict, scores, id, steps, comments, seconds_spent, "
                          "edited_text FROM reviews WHERE rationale_id IN ({keys}) ORDER BY rationale_id, reviewer_id",
                    rationale_ids, "rationale_id reviewer_id verdict scores id steps comments seconds_spent "
                                   "edited_text", "scores steps comments")


def version_texts(conn: Connection, *, rationale_ids: Sequence[str]) -> Sequence[Any]:
    return _decoded(conn, "SELECT id, steps, final_answer, text FROM rationales WHERE id IN ({keys})",
                    rationale_ids, "id steps final_answer text", "steps final_answer")


def drafting_provenance(conn: Connection, *, project_id: int) -> Sequence[Any]:
    """(origin, model, prompt hash, versions, tokens) of the project's model-written versions."""
    return conn.execute(
        select(rationales.c.origin, rationales.c.model, rationales.c.prompt_hash, func.count(),
               func.coalesce(func.sum(rationales.c.prompt_tokens + rationales.c.completion_tokens), 0))
        .select_from(rationales.join(items, items.c.id == rationales.c.item_id))
        .where(items.c.project_id == project_id, rationales.c.origin.in_(["generated", "regenerated"]))
        .group_by(rationales.c.origin, rationales.c.model, rationales.c.prompt_hash)
        .order_by(rationales.c.model, rationales.c.prompt_hash, rationales.c.origin)).all()
