"""Copy a whole clinreason database into another one: SQLite -> PostgreSQL, back, or same-kind
(`clinreason migrate-db`).

What it does, in order:
  1. refuses when source and target are the same database, when the source is not a clinreason database
     at this version's schema (its `alembic_version` must be the head revision: upgrade it first with
     `clinreason init`), or when the target holds any row in any table (the error names the table);
  2. in ONE transaction on the target: upgrades the target's schema to the head revision (the same Alembic
     migrations `store.db.upgrade` runs, on this transaction's connection, so a failure leaves no tables
     behind either), copies every table of `tables.metadata` in foreign-key order
     (`metadata.sorted_tables`) in batches streamed from one consistent snapshot of the source (SQLite: a
     deferred WAL read, PostgreSQL: REPEATABLE READ read-only), sets every integer id sequence on a
     PostgreSQL target past the copied maximum, then reads the target back and compares row counts and a
     content hash per table; commits only when every table matches, otherwise rolls back.

Ids, timestamps and JSON documents are copied as they are, so every reference between rows survives and an
export of the copy equals an export of the original. The immutability triggers of migration 0004 (rationale
versions, reviews, decisions and events refuse UPDATE and DELETE) are created by the upgrade and fire on
UPDATE/DELETE only: the copy is INSERTs, they do not stand in its way, and they guard the copy afterwards.
The tables migration 0015's triggers keep (`item_tallies`, `source_tallies`, `version_tallies`,
`day_tallies`: `info["derived"]`) are neither copied nor compared: a SQLite target's triggers fill them as
the items, sources, versions, reviews and decisions arrive; a PostgreSQL target keeps none (yet).

The content hash (sha256) is backend-independent: one canonical JSON line per row, rows ordered by primary
key (strings in byte order: PostgreSQL is asked for COLLATE "C", SQLite's BINARY is byte order), columns in
schema order; datetimes as UTC ISO 8601 (SQLite hands back naive UTC values), floats as `repr`, JSON
documents with sorted keys and told apart from SQL NULL (a JSON `null` and a SQL NULL hash differently and
are copied as what they are). So the same data gives the same hash on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    func,
    inspect,
    null,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from clinreason.store import db as store_db
from clinreason.store.tables import metadata

#: Alembic's bookkeeping table: not in `metadata`; the upgrade writes the target's row, the check compares it
VERSION_TABLE = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True))
#: the tables a copy writes and checks, in foreign-key order: all but those triggers derive (migration 0015)
COPIED = [t for t in metadata.sorted_tables if not t.info.get("derived")]

DEFAULT_BATCH = 1000

#: called after every batch: (table, rows of it copied so far)
Progress = Callable[[str, int], None]


class MigrationError(RuntimeError):
    """The copy was refused or failed; nothing was committed on the target."""


class TargetNotEmpty(MigrationError):
    def __init__(self, table: str, url: str) -> None:
        super().__init__(f"the target database {url} is not empty: table {table} has rows. migrate-db copies into "
                         "an empty database only (create a new one; do not run `clinreason init` on it)")
        self.table = table


@dataclass(frozen=True, slots=True)
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    source_hash: str
    target_hash: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_hash == self.target_hash

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.source_rows, "target_rows": self.target_rows,
                "source_hash": self.source_hash, "target_hash": self.target_hash, "ok": self.ok}


@dataclass(slots=True)
class MigrationReport:
    source: str  # the URLs, passwords hidden
    target: str
    revision: str = ""
    tables: list[TableCheck] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)  # PostgreSQL target: table -> the next id it hands out
    committed: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.tables) and all(t.ok for t in self.tables)

    @property
    def rows(self) -> int:
        return sum(t.source_rows for t in self.tables if t.table != VERSION_TABLE.name)

    @property
    def mismatched(self) -> list[str]:
        return [t.table for t in self.tables if not t.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "revision": self.revision, "ok": self.ok,
                "committed": self.committed, "rows": self.rows, "mismatched": self.mismatched,
                "tables": [t.to_dict() for t in self.tables], "sequences": self.sequences,
                "seconds": round(self.seconds, 3)}


# --- the canonical form and the hash ------------------------------------------------------------------

def _canonical(value: Any, *, is_json: bool, sql_null: bool) -> Any:
    if is_json:
        return None if sql_null else {"json": value}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return {"datetime": aware.isoformat()}
    raise TypeError(f"no canonical form for {type(value).__name__} values")


class _Digest:
    """Row count and sha256 of one table's canonical rows, fed in primary-key order."""

    def __init__(self, table: Table) -> None:
        self.rows = 0
        self._hash = hashlib.sha256()
        self._json = [isinstance(c.type, JSON) for c in table.columns]
        self._hash.update(json.dumps([table.name, [c.name for c in table.columns]]).encode() + b"\n")

    def add(self, values: list[Any], nulls: list[bool]) -> None:
        line = [_canonical(v, is_json=j, sql_null=n) for v, j, n in zip(values, self._json, nulls, strict=True)]
        self._hash.update(json.dumps(line, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        self.rows += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _ordered_select(conn: Connection, table: Table) -> tuple[Any, list[int]]:
    """SELECT every column (+ an IS NULL flag per nullable JSON column), ordered by primary key in byte
    order on either backend. Returns the statement and, per column, the index of its flag (-1: none)."""
    cols: list[ColumnElement[Any]] = list(table.columns)
    flags: list[int] = []
    for c in table.columns:
        if isinstance(c.type, JSON) and c.nullable:
            flags.append(len(cols))
            cols.append(c.is_(None).label(f"_null_{c.name}"))
        else:
            flags.append(-1)
    order: list[ColumnElement[Any]] = []
    for c in table.primary_key.columns:
        order.append(c.collate("C") if conn.dialect.name == "postgresql" and isinstance(c.type, String) else c)
    return select(*cols).order_by(*order), flags


def _batches(conn: Connection, table: Table, batch_size: int) -> Iterator[list[tuple[list[Any], list[bool]]]]:
    """The table's rows in primary-key order, `batch_size` at a time (streamed: memory stays flat), each as
    (values in column order, SQL NULL per column)."""
    stmt, flags = _ordered_select(conn, table)
    n = len(table.columns)
    json_cols = [isinstance(c.type, JSON) for c in table.columns]
    for part in conn.execute(stmt.execution_options(yield_per=batch_size)).partitions():
        out = []
        for row in part:
            values = list(row[:n])
            # SQL NULL per column: a nullable JSON column says so in its flag (None there may be JSON null);
            # a JSON column that is NOT NULL never holds one
            out.append((values, [bool(row[f]) if f >= 0 else (not is_json and values[i] is None)
                                 for i, (f, is_json) in enumerate(zip(flags, json_cols, strict=True))]))
        yield out


def table_digest(conn: Connection, table: Table, *, batch_size: int = DEFAULT_BATCH) -> tuple[int, str]:
    """(rows, content hash) of one table, the same on SQLite and PostgreSQL for the same data."""
    digest = _Digest(table)
    for batch in _batches(conn, table, batch_size):
        for values, nulls in batch:
            digest.add(values, nulls)
    return digest.rows, digest.hexdigest()


def database_digests(conn: Connection, *, batch_size: int = DEFAULT_BATCH) -> dict[str, tuple[int, str]]:
    """(rows, content hash) of every table of the schema and of alembic_version."""
    return {t.name: table_digest(conn, t, batch_size=batch_size) for t in [*COPIED, VERSION_TABLE]}


# --- the copy -----------------------------------------------------------------------------------------

def display_url(url: str) -> str:
    return make_url(store_db.normalise_url(url)).render_as_string(hide_password=True)


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(store_db.normalise_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        raise MigrationError(f"{url}: an in-memory SQLite database cannot take part in a migration")
    return Path(parsed.database)


def _same_database(a: str, b: str) -> bool:
    pa, pb = _sqlite_path(a), _sqlite_path(b)
    if pa is not None or pb is not None:
        return pa is not None and pb is not None and pa.resolve() == pb.resolve()
    ua, ub = make_url(store_db.normalise_url(a)), make_url(store_db.normalise_url(b))
    return ((ua.host or "localhost", ua.port or 5432, ua.database)
            == (ub.host or "localhost", ub.port or 5432, ub.database))


@contextmanager
def _source_snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent, read-only view of the source for the whole copy that takes no write lock."""
    if engine.dialect.name == "sqlite":
        reader = store_db.snapshot_engine(engine)
        try:
            with reader.connect() as conn, conn.begin():
                yield conn
        finally:
            reader.dispose()
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def _source_revision(conn: Connection, url: str) -> str:
    if not inspect(conn).has_table(VERSION_TABLE.name):
        raise MigrationError(f"the source {url} is not a clinreason database (it has no alembic_version table)")
    revision = conn.execute(select(VERSION_TABLE.c.version_num)).scalar()
    head = store_db.head_revision()
    if revision != head:
        raise MigrationError(f"the source {url} is at schema revision {revision}, this clinreason at {head}: "
                             "upgrade the source first (`clinreason init --db SOURCE`)")
    return head


def _refuse_unless_empty(conn: Connection, url: str) -> None:
    """Any row in any table of the target (its alembic_version apart) refuses the copy, naming the table."""
    prep = conn.dialect.identifier_preparer
    names = sorted(inspect(conn).get_table_names())
    known = {t.name for t in metadata.sorted_tables}
    # the schema's own tables first, in foreign-key order (the error then names the one a person expects)
    for name in [t.name for t in metadata.sorted_tables if t.name in names] + [n for n in names if n not in known]:
        if name == VERSION_TABLE.name or name.startswith("sqlite_"):
            continue
        if conn.execute(text(f"SELECT 1 FROM {prep.quote(name)} LIMIT 1")).first() is not None:
            raise TargetNotEmpty(name, url)


def _upgrade_in(conn: Connection) -> None:
    """The schema migrations `store.db.upgrade` runs, inside the caller's transaction."""
    from alembic import command

    command.upgrade(store_db._alembic_config(conn), "head")


def _insert_rows(table: Table, batch: list[tuple[list[Any], list[bool]]]) -> list[dict[str, Any]]:
    cols = list(table.columns)
    json_cols = [isinstance(c.type, JSON) for c in cols]
    rows = []
    for values, nulls in batch:
        row: dict[str, Any] = {}
        for c, v, is_json, is_null in zip(cols, values, json_cols, nulls, strict=True):
            if is_json:
                row[c.name] = null() if is_null else v  # a JSON `null` stays JSON null, a SQL NULL SQL NULL
            elif isinstance(v, datetime):
                row[c.name] = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
            else:
                row[c.name] = v
        rows.append(row)
    return rows


def _copy_table(src: Connection, dst: Connection, table: Table, *, batch_size: int,
                progress: Progress | None) -> _Digest:
    digest = _Digest(table)
    stmt = table.insert()
    for batch in _batches(src, table, batch_size):
        try:
            dst.execute(stmt, _insert_rows(table, batch))
        except DBAPIError as exc:
            raise MigrationError(f"copying table {table.name} failed near row {digest.rows + 1}: "
                                 f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}") from exc
        for values, nulls in batch:
            digest.add(values, nulls)
        if progress is not None:
            progress(table.name, digest.rows)
    return digest


def _set_sequences(conn: Connection) -> dict[str, int]:
    """PostgreSQL: every serial id's sequence hands out max(id) + 1 next (explicit ids did not advance it)."""
    if conn.dialect.name != "postgresql":
        return {}
    prep = conn.dialect.identifier_preparer
    out: dict[str, int] = {}
    for table in metadata.sorted_tables:
        col = table.autoincrement_column
        if col is None:
            continue
        nxt = conn.execute(select(func.coalesce(func.max(col), 0) + 1)).scalar_one()
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                           {"t": prep.format_table(table), "c": col.name}).scalar()
        if seq is None:
            continue
        conn.execute(text("SELECT setval(CAST(:s AS regclass), :n, false)"), {"s": seq, "n": int(nxt)})
        out[table.name] = int(nxt)
    return out


class _Mismatch(Exception):
    """Raised inside the target transaction to roll it back after a failed verification."""


def copy_database(source: Engine, target: Engine, *, batch_size: int = DEFAULT_BATCH,
                  progress: Progress | None = None, source_label: str = "", target_label: str = "") -> MigrationReport:
    """Copy everything in `source` into the empty `target` in one target transaction; verify it (row counts,
    content hashes); commit only when every table matches. Raises MigrationError (nothing committed) on a
    refusal or a failure; returns the report, `committed` False, on a mismatch."""
    if batch_size < 1:
        raise MigrationError("the batch size must be at least 1")
    report = MigrationReport(source=source_label or display_url(str(source.url)),
                             target=target_label or display_url(str(target.url)))
    started = time.perf_counter()
    try:
        with _source_snapshot(source) as src, store_db.transaction(target) as dst:
            report.revision = _source_revision(src, report.source)
            _refuse_unless_empty(dst, report.target)
            _upgrade_in(dst)
            digests = {t.name: _copy_table(src, dst, t, batch_size=batch_size, progress=progress)
                       for t in COPIED}
            report.sequences = _set_sequences(dst)
            for table in COPIED:
                rows, digest = table_digest(dst, table, batch_size=batch_size)
                mine = digests[table.name]
                report.tables.append(TableCheck(table.name, mine.rows, rows, mine.hexdigest(), digest))
            src_version, dst_version = (table_digest(c, VERSION_TABLE) for c in (src, dst))
            report.tables.append(TableCheck(VERSION_TABLE.name, src_version[0], dst_version[0], src_version[1],
                                            dst_version[1]))
            if not report.ok:
                raise _Mismatch
    except _Mismatch:
        pass
    except DBAPIError as exc:
        raise MigrationError(f"the migration failed, nothing was committed on the target: "
                             f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}") from exc
    else:
        report.committed = True
    finally:
        report.seconds = time.perf_counter() - started
    return report


def migrate_database(source_url: str, target_url: str, *, batch_size: int = DEFAULT_BATCH,
                     progress: Progress | None = None) -> MigrationReport:
    """`copy_database` between two URLs (or SQLite file paths). A SQLite target file this call created is
    removed again when nothing was committed."""
    if _same_database(source_url, target_url):
        raise MigrationError("the source and the target are the same database")
    src_path, dst_path = _sqlite_path(source_url), _sqlite_path(target_url)
    if src_path is not None and not src_path.is_file():
        raise MigrationError(f"the source {source_url}: no such SQLite database file")
    created = dst_path is not None and not dst_path.exists()
    source, target = store_db.make_engine(source_url), store_db.make_engine(target_url)
    report: MigrationReport | None = None
    try:
        report = copy_database(source, target, batch_size=batch_size, progress=progress,
                               source_label=display_url(source_url), target_label=display_url(target_url))
        return report
    finally:
        source.dispose()
        target.dispose()
        if created and dst_path is not None and (report is None or not report.committed):
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{dst_path}{suffix}").unlink(missing_ok=True)
