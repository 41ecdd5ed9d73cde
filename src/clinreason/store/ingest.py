"""What an import writes: new item rows and the source references of every record read.

The caller owns the transaction (an import is all or nothing); every function works on one batch of
records with a bounded number of statements, whatever the batch size: existence is asked with the batch's
keys bound as one parameter, and rows go in by one COPY (PostgreSQL) or one executemany (SQLite)."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager, suppress
from json.encoder import encode_basestring
from typing import Any, Callable, Container, Iterator, Mapping

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from clinreason.domain.items import Item as ImportedItem
from clinreason.domain.items import SourceRef
from clinreason.store.common import bind_value, insert_rows, json_serializer, now, select_in
from clinreason.store.db import _json_dumps as _COMPACT
from clinreason.store.tables import events, item_sources, items


def existing_item_ids(conn: Connection, *, item_ids: list[str]) -> set[str]:
    """Which of these item ids are stored already (in any project)."""
    if not item_ids:
        return set()
    return {row[0] for row in select_in(conn, "SELECT id FROM items WHERE id IN ({keys})", item_ids)}


_ITEM_COLUMNS = ("id", "project_id", "content_hash", "question", "options", "answer_labels", "answer_text",
                 "language", "specialty", "context", "reference_explanation", "meta", "state", "strikes",
                 "auto_retries", "flag_reason", "created_at", "updated_at")
_SOURCE_COLUMNS = ("item_id", "source", "subject", "file", "record", "license", "imported_at")


def add_items(conn: Connection, *, project_id: int, new: list[ImportedItem],
              flag_reasons: dict[str, str] | None = None, options_json: Mapping[str, str] | None = None) -> None:
    """Insert freshly imported items (one bulk insert). Each carries its id, content hash and state;
    `flag_reasons` maps an item id to why it was flagged on arrival. `options_json`: item id -> its options
    as `compact_options_json` wrote them (the reader process of a large import does), used when the
    engine's serialiser is the compact one those were written for."""
    if not new:
        return
    # the values go to the driver in its own form: the JSON columns serialised with the engine's serialiser
    # (what their bind processor does), the batch's one timestamp converted once
    ts = bind_value(conn, items, "created_at", now())
    dumps = json_serializer(conn)
    flag = (flag_reasons or {}).get
    answers: dict[tuple[str, ...], str] = {}  # a batch's answers are a few label sets: each serialised once
    empty = dumps({})

    def answer_json(labels: list[str]) -> str:
        key = tuple(labels)
        text = answers.get(key)
        if text is None:
            text = answers[key] = dumps(labels)
        return text

    written: Mapping[str, str] = (options_json or {}) if dumps is _COMPACT else {}
    ready = written.get

    _insert_items(conn, [
        (it.id, project_id, it.content_hash, it.question, ready(it.id) or _options_json(dumps, it.options),
         answer_json(it.answer_labels), it.answer_text, it.language, it.specialty, it.context,
         it.reference_explanation, empty if type(it.metadata) is dict and not it.metadata else dumps(it.metadata),
         it.state, 0, 0, flag(it.id), ts, ts)
        for it in new])


def compact_options_json(options: dict[str, str]) -> str | None:
    """The options column's text as the engine's compact serialiser writes it, when every label and text
    is a str (None otherwise: `add_items` then serialises them itself)."""
    if not all(type(k) is str and type(v) is str for k, v in options.items()):
        return None
    return _options_json(_COMPACT, options)


def options_json(dumps: Callable[[Any], str], options: dict[str, str]) -> str:
    """The options column's text as `dumps` (the engine's serialiser) stores it."""
    return _options_json(dumps, options)


def _options_json(dumps: Callable[[Any], str], options: dict[str, str]) -> str:
    """`dumps([[label, text], ...])`: for text labels and texts written directly (what the engine's compact
    serialiser writes, ensure_ascii off: each string as `encode_basestring` quotes it), else by `dumps`."""
    if dumps is not _COMPACT or not all(type(k) is str and type(v) is str for k, v in options.items()):
        return dumps([[k, v] for k, v in options.items()])
    quote = encode_basestring
    return "[" + ",".join(f"[{quote(k)},{quote(v)}]" for k, v in options.items()) + "]"


#: why an item without a gold answer is flagged on arrival
FLAG_NO_GOLD = "no gold answer in the source record"


def add_item_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert items given as rows in the driver's form, in the order of the items table's import columns
    (id, project_id, content_hash, question, options, answer_labels, answer_text, language, specialty,
    context, reference_explanation, meta, state, strikes, auto_retries, flag_reason, created_at,
    updated_at): what `add_items` writes, built by the reader process of a large import."""
    _insert_items(conn, rows)


def _insert_items(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert item rows (in `_ITEM_COLUMNS` order); while an import has the tallies' insert triggers lifted,
    count them for its `_Tally`, and remember the batch's items for its source rows."""
    insert_rows(conn, items, _ITEM_COLUMNS, rows)
    tally: _Tally | None = conn.info.get(_TALLY_LIFTED)
    if tally is not None:
        tally.batch = {}
        for row in rows:
            tally.items[(row[1], "(none)" if row[8] is None else row[8], row[12])] += 1
            tally.batch[row[0]] = (row[1], row[12])


def item_timestamps(conn: Connection) -> tuple[Any, Any]:
    """(created_at, updated_at) of a batch's items as the driver is given them: one timestamp, now."""
    ts = bind_value(conn, items, "created_at", now())
    return ts, ts


def add_new_source_rows(conn: Connection, *, refs: list[tuple[Any, ...]], new_item_ids: Container[str] = ()
                        ) -> list[str]:
    """Store the references given as (item id, source, subject, file, record, license) that are not stored
    yet — a re-import adds none, a reference listed twice is stored once. Returns the item id of every
    reference added, in order. `new_item_ids`: items this transaction has just added, which can have no
    stored reference (they are not looked up)."""
    if not refs:
        return []
    asked = list({ref[0] for ref in refs if ref[0] not in new_item_ids})
    stored = {tuple(row) for row in select_in(
        conn, "SELECT item_id, source, file, record FROM item_sources WHERE item_id IN ({keys})", asked)} \
        if asked else set()
    ts = (bind_value(conn, item_sources, "imported_at", now()),)
    fresh: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for ref in refs:
        key = (ref[0], ref[1], ref[3], ref[4])
        if key not in fresh and key not in stored:
            fresh[key] = ref + ts
    rows = list(fresh.values())
    tally: _Tally | None = conn.info.get(_TALLY_LIFTED)
    if tally is None:
        insert_rows(conn, item_sources, _SOURCE_COLUMNS, rows)
        return [row[0] for row in rows]
    # an import with the tallies' insert triggers lifted: the rows of the batch's new items first, counted
    # here (such an item has no other source row, no review, its state is known), then those of items
    # stored before, tallied by one statement over them (each item's rows keep their order)
    mine = [row for row in rows if row[0] in tally.batch]
    others = [row for row in rows if row[0] not in tally.batch]
    insert_rows(conn, item_sources, _SOURCE_COLUMNS, mine)
    pairs: set[tuple[Any, Any]] = set()
    for row in mine:
        if (row[0], row[1]) not in pairs:
            pairs.add((row[0], row[1]))
            project_id, state = tally.batch[row[0]]
            tally.sources[(project_id, row[1], state)] += 1
    if others:
        mark = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM item_sources").scalar_one()
        insert_rows(conn, item_sources, _SOURCE_COLUMNS, others)
        conn.exec_driver_sql(_TALLY_NEW_SOURCES, (mark, mark))
    return [row[0] for row in mine + others]


def writes_compact_json(conn: Connection) -> bool:
    """Whether the engine serialises JSON columns with the compact serialiser the reader process of a
    large import writes them with (every engine `db.make_engine` builds does)."""
    return json_serializer(conn) is _COMPACT


_EVENT_COLUMNS = ("project_id", "item_id", "kind", "actor", "before", "after", "detail", "at")


def event_value(conn: Connection, name: str, value: Any) -> Any:
    """One value of the events column `name` (a JSON column, or `at`) as the driver is given it: what
    `decisions.add_events` stores for it."""
    return bind_value(conn, events, name, value)


def add_event_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Append import events given as rows in the driver's form (project_id, item_id, kind, actor, before,
    after, detail, at): what `decisions.add_events` writes for the same events."""
    insert_rows(conn, events, _EVENT_COLUMNS, rows)


def add_new_sources(conn: Connection, *, refs: list[tuple[str, SourceRef]], new_item_ids: Container[str] = ()
                    ) -> list[str]:
    """`add_new_source_rows` for (item id, source reference) pairs."""
    return add_new_source_rows(conn, refs=[(item_id, s.source, s.subject, s.file, s.record, s.license)
                                           for item_id, s in refs], new_item_ids=new_item_ids)


# --- a large import on SQLite: secondary indexes built once, not kept up row by row -----------------

#: the tables an import fills, in the order their rows are written
BULK_TABLES = ("items", "item_sources", "events")
#: an import expected to bring fewer records keeps every index live (a rebuild is not worth it)
DEFER_MIN_RECORDS = 20_000
#: the importing connection's page cache, in KiB (PRAGMA cache_size=-N), for every import: the primary keys
#: and unique constraints an import keeps up are random-keyed B-trees (a small import never fills it)
BULK_CACHE_KIB = 16_384


def deferrable_indexes(conn: Connection, *, expected_records: int) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the named secondary indexes of the `BULK_TABLES` an import expected
    to bring `expected_records` records should drop and build again at its end: on SQLite only, for an
    import of at least `DEFER_MIN_RECORDS` records, and of a table only when the import is expected to
    bring at least as many rows as the table holds (its largest rowid: deletions make that an over-count,
    never an under-count), so that building the index from all its rows once costs less than keeping it
    up for each new one. The unique constraints' own indexes (sqlite_autoindex_*, no statement) stay:
    they are what duplicates are refused by. On PostgreSQL nothing: DROP INDEX takes an ACCESS EXCLUSIVE
    lock on the table, which would stall every reader of a running server for the whole import."""
    if conn.dialect.name != "sqlite" or expected_records < DEFER_MIN_RECORDS:
        return []
    found: list[tuple[str, str]] = []
    for table in BULK_TABLES:
        stored = conn.exec_driver_sql(f"SELECT max(rowid) FROM {table}").scalar() or 0
        if expected_records >= stored:
            found += [(row[0], row[1]) for row in conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL "
                "ORDER BY rowid", (table,))]
    return found


#: the row triggers of migration 0015 that tally each inserted item and source row; a SQLite import lifts
#: them and counts what it inserts itself (`_tally_inserted`)
TALLY_INSERT_TRIGGERS = ("tally_item_sources_insert", "tally_items_insert")
#: conn.info key: the `_Tally` of an import that has the triggers lifted
_TALLY_LIFTED = "clinreason.import_tally"
_TALLY_ITEM_KEY = "project_id, specialty, state, decision_kind, decided, version_found, origin, rounds"
_TALLY_SOURCE_KEY = "project_id, source, state, rounds"
#: an import's new items by (project, specialty, state): undecided, unreviewed
_TALLY_ADD_ITEMS = (
    f"INSERT INTO item_tallies ({_TALLY_ITEM_KEY}, n_items, n_reviews) VALUES (?, ?, ?, '', 0, 0, '', 0, ?, 0) "
    f"ON CONFLICT ({_TALLY_ITEM_KEY}) DO UPDATE SET n_items = item_tallies.n_items + excluded.n_items")
#: its new items' (item, source) pairs by (project, source, state)
_TALLY_ADD_SOURCES = (
    f"INSERT INTO source_tallies ({_TALLY_SOURCE_KEY}, n_items, n_reviews) VALUES (?, ?, ?, 0, ?, 0) "
    f"ON CONFLICT ({_TALLY_SOURCE_KEY}) DO UPDATE SET n_items = source_tallies.n_items + excluded.n_items")


class _Tally:
    """What an import inserted while the tallies' insert triggers were lifted, counted as it went: its new
    items by group and their (item, source) pairs, added to the tallies at its end; and the current batch's
    new items (id -> (project id, state)), which that batch's source rows are counted by. Its size is the
    number of groups and one batch, whatever the import's."""

    def __init__(self) -> None:
        self.items: Counter[tuple[Any, ...]] = Counter()
        self.sources: Counter[tuple[Any, ...]] = Counter()
        self.batch: dict[Any, tuple[Any, Any]] = {}


#: the source rows past the mark (one batch): each (item, source) pair no earlier row named counts its item
#: (a new item or one already stored, with whatever reviews it has) under that source
_TALLY_NEW_SOURCES = (
    f"INSERT INTO source_tallies ({_TALLY_SOURCE_KEY}, n_items, n_reviews) "
    "SELECT i.project_id, p.source, i.state, coalesce(rv.rounds, 0), count(*), coalesce(sum(rv.n), 0) "
    "FROM (SELECT item_id, source, count(*) AS c FROM item_sources WHERE id > ? GROUP BY item_id, source) AS p "
    "JOIN items i ON i.id = p.item_id "
    "LEFT JOIN (SELECT item_id, count(*) AS n, count(DISTINCT rationale_id) AS rounds FROM reviews "
    "WHERE item_id IN (SELECT item_id FROM item_sources WHERE id > ?) GROUP BY item_id) AS rv "
    "ON rv.item_id = p.item_id "
    "WHERE (SELECT count(*) FROM item_sources o WHERE o.item_id = p.item_id AND o.source = p.source) = p.c "
    "GROUP BY i.project_id, p.source, i.state, coalesce(rv.rounds, 0) "
    f"ON CONFLICT ({_TALLY_SOURCE_KEY}) DO UPDATE SET n_items = source_tallies.n_items + excluded.n_items, "
    "n_reviews = source_tallies.n_reviews + excluded.n_reviews")


@contextmanager
def _tally_inserted(conn: Connection) -> Iterator[None]:
    """SQLite: the per-row triggers that tally each inserted item and source row (migration 0015) lifted for
    the block and put back as they were (their own statements). Meanwhile the import's inserts count what
    they insert (`_insert_items`, `add_new_source_rows`; source rows of items stored before are tallied by
    one statement per batch, `_TALLY_NEW_SOURCES`), and the counts go into the tallies at the end, in the
    same transaction: what the triggers would have added row by row (an import inserts items, sources and
    events and changes no row), at a fraction of their cost. Without the triggers (a schema before 0015)
    nothing."""
    placeholders = ", ".join("?" for _ in TALLY_INSERT_TRIGGERS)
    triggers = [(r[0], r[1]) for r in conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({placeholders}) ORDER BY name",
        TALLY_INSERT_TRIGGERS)]
    if len(triggers) != len(TALLY_INSERT_TRIGGERS):
        yield
        return
    for name, _ in triggers:
        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    tally = conn.info[_TALLY_LIFTED] = _Tally()
    try:
        yield
    finally:
        conn.info.pop(_TALLY_LIFTED, None)
    if tally.items:
        conn.exec_driver_sql(_TALLY_ADD_ITEMS, [(*key, n) for key, n in sorted(tally.items.items())])
    if tally.sources:
        conn.exec_driver_sql(_TALLY_ADD_SOURCES, [(*key, n) for key, n in sorted(tally.sources.items())])
    for _, create in triggers:
        conn.exec_driver_sql(create)


@contextmanager
def bulk_import(conn: Connection, *, expected_records: int) -> Iterator[list[str]]:
    """An import's writes inside the caller's transaction, on SQLite: the connection's page cache is
    `BULK_CACHE_KIB` meanwhile (restored after: the pool hands the connection on), and the indexes
    `deferrable_indexes` names are dropped first and created again at the end, each with the very
    statement SQLite recorded for it (the schema after is the schema before, byte for byte), with the
    connection's own page cache again (CREATE INDEX sorts in as much memory as the cache is given); and
    the tallies' insert triggers lifted meanwhile (`_tally_inserted`). Yields the index names dropped. DDL
    is transactional in SQLite: an import that fails inside the block rolls back and leaves every index
    (and trigger) as it was. On PostgreSQL: nothing."""
    if conn.dialect.name != "sqlite":
        yield []
        return
    dropped = deferrable_indexes(conn, expected_records=expected_records)
    cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
    try:
        for name, _ in dropped:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        with _tally_inserted(conn):
            yield [name for name, _ in dropped]
        if dropped:
            conn.exec_driver_sql(f"PRAGMA cache_size={cache}")
        for _, create in dropped:
            conn.exec_driver_sql(create)
    finally:
        with suppress(DBAPIError):  # a connection that broke meanwhile is discarded anyway
            conn.exec_driver_sql(f"PRAGMA cache_size={cache}")
