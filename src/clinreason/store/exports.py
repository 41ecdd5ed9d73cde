"""The export's read model: accepted items streamed in order, and per chunk their sources, versions
(provenance and texts) and reviews (scores, step marks). Rows are plain tuples, JSON columns as the driver
hands them back (an export streams millions of them; the export stage decodes what it uses, once)."""

from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, Text, exists, func, select, type_coerce

from clinreason.store.common import select_in
from clinreason.store.stats import tallies_kept
from clinreason.store.tables import decisions, item_sources, items, rationales, version_tallies


def accepted_items(conn: Connection, *, project_id: int, kinds: list[str], source: str | None, light: bool,
                   chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """Accepted items decided by one of `kinds`, ordered by id, as tuples: (id, specialty, decision kind,
    accepted rationale id) and, unless `light`, (question, context, options, answer labels, answer text,
    language) — options and answer labels as stored (see `json_text`)."""
    cols: list[Any] = [items.c.id, items.c.specialty, decisions.c.kind, decisions.c.rationale_id]
    if not light:
        cols += [items.c.question, items.c.context, type_coerce(items.c.options, Text),
                 type_coerce(items.c.answer_labels, Text), items.c.answer_text, items.c.language]
    stmt = (select(*cols).select_from(items.join(decisions, decisions.c.item_id == items.c.id))
            .where(items.c.project_id == project_id, items.c.state == "accepted", decisions.c.kind.in_(kinds),
                   decisions.c.rationale_id.is_not(None)).order_by(items.c.id))
    if source:
        stmt = stmt.where(exists(select(item_sources.c.id).where(item_sources.c.item_id == items.c.id,
                                                                 item_sources.c.source == source)))
    raw = _sqlite(conn)
    if raw is None:  # PostgreSQL: a server-side cursor
        yield from conn.execute(stmt.execution_options(yield_per=chunk_size))
        return
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    cursor = raw.execute(str(compiled), [compiled.params[name] for name in compiled.positiontup or ()])
    try:
        while batch := cursor.fetchmany(chunk_size):
            yield from batch
    finally:
        cursor.close()


def _sqlite(conn: Connection) -> Any:
    """The sqlite3 connection under `conn`, inside the transaction `conn` began (so reads through it see the
    same snapshot); None on other databases. Reading through it skips SQLAlchemy's per-row layer."""
    if conn.dialect.name != "sqlite":
        return None
    if not conn.in_transaction():
        conn.begin()
    return conn.connection.dbapi_connection


def _select_in(conn: Connection, sql: str, keys: Sequence[str]) -> Sequence[Any]:
    """`sql` with its `{keys}` placeholder bound to `keys` (select_in), rows as the driver gives them."""
    if not keys:
        return []
    raw = _sqlite(conn)
    if raw is None:
        return select_in(conn, sql, list(keys))
    rows: list[Any] = raw.execute(sql.format(keys="SELECT value FROM json_each(?)"),
                                  (json.dumps(list(keys)),)).fetchall()
    return rows


def json_text(conn: Connection) -> bool:
    """Whether JSON columns come back as their text (SQLite) rather than decoded by the driver (psycopg)."""
    return conn.dialect.name != "postgresql"


_RAW = json.JSONDecoder().raw_decode


def load_json(text: str) -> Any:
    """json.loads, without its whitespace scans for the compact JSON the store writes (anything else: loads)."""
    try:
        value, end = _RAW(text)
        if end == len(text):
            return value
    except ValueError:
        pass
    return json.loads(text)


def sources_of(conn: Connection, *, item_ids: Sequence[str]) -> Sequence[Any]:
    """(item id, source, subject, licence) of the items' sources, by item id and import order."""
    return _select_in(conn, "SELECT item_id, source, subject, license FROM item_sources WHERE item_id IN ({keys}) "
                         "ORDER BY item_id, id", item_ids)


#: the columns `versions_of` returns, in order
VERSION_FIELDS = ("id", "item_id", "version", "origin", "author", "model", "prompt_hash", "params", "seed",
                  "parent_version", "steps", "final_answer", "text")


def versions_of(conn: Connection, *, item_ids: Sequence[str], texts: bool) -> Sequence[Any]:
    """The items' rationale versions by item id and version: VERSION_FIELDS (params, steps and final answer as
    stored, see `json_text`); without `texts`, steps, final answer and text are None."""
    body = "steps, final_answer, text" if texts else "NULL, NULL, NULL"
    return _select_in(conn, "SELECT id, item_id, version, origin, author, model, prompt_hash, params, seed, "
                         f"parent_version, {body} FROM rationales WHERE item_id IN ({{keys}}) "
                         "ORDER BY item_id, version", item_ids)


#: the columns `review_scores` returns, in order
REVIEW_FIELDS = ("rationale_id", "reviewer_id", "verdict", "scores", "id", "steps", "comments", "seconds_spent",
                 "edited_text")


def review_scores(conn: Connection, *, rationale_ids: Sequence[str], notes: bool = True) -> Sequence[Any]:
    """The versions' reviews by rationale id and reviewer: REVIEW_FIELDS — scores, verdict, step marks (the
    `steps` JSON, None where none) and, with `notes`, comments, seconds spent and edited text (else None)
    (JSON as stored, see `json_text`)."""
    extra = "comments, seconds_spent, edited_text" if notes else "NULL, NULL, NULL"
    return _select_in(conn, f"SELECT rationale_id, reviewer_id, verdict, scores, id, steps, {extra} FROM reviews "
                            "WHERE rationale_id IN ({keys}) ORDER BY rationale_id, reviewer_id", rationale_ids)


def drafting_provenance(conn: Connection, *, project_id: int) -> Sequence[Any]:
    """(origin, model, prompt hash, versions, tokens) of the project's model-written versions, by model,
    prompt hash (unset first) and origin: from `version_tallies` where the triggers keep it (migration 0015),
    else a pass over the versions."""
    if tallies_kept(conn):
        t = version_tallies.c
        return [(origin, model if model_set else None, prompt if prompt_set else None, int(n), int(tokens))
                for origin, model_set, model, prompt_set, prompt, n, tokens in conn.execute(
                    select(t.origin, t.model_set, t.model, t.prompt_set, t.prompt_hash, t.n_versions, t.tokens)
                    .where(t.project_id == project_id, t.origin.in_(["generated", "regenerated"]), t.n_versions != 0)
                    .order_by(t.model_set, t.model, t.prompt_set, t.prompt_hash, t.origin))]
    return drafting_provenance_pass(conn, project_id=project_id)


def drafting_provenance_pass(conn: Connection, *, project_id: int) -> Sequence[Any]:
    """`drafting_provenance` by a pass over the project's versions."""
    return conn.execute(
        select(rationales.c.origin, rationales.c.model, rationales.c.prompt_hash, func.count(),
               func.coalesce(func.sum(rationales.c.prompt_tokens + rationales.c.completion_tokens), 0))
        .select_from(rationales.join(items, items.c.id == rationales.c.item_id))
        .where(items.c.project_id == project_id, rationales.c.origin.in_(["generated", "regenerated"]))
        .group_by(rationales.c.origin, rationales.c.model, rationales.c.prompt_hash)
        .order_by(rationales.c.model, rationales.c.prompt_hash, rationales.c.origin)).all()
