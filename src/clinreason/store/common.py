"""What every store module shares: the errors callers catch, the clock, ids, and dialect-aware inserts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import Connection, Table

from clinreason.domain.messages import Translatable


class StaleStateError(Translatable, RuntimeError):
    """The row was no longer in the state the caller read: someone else moved it first. Raised with a
    message, or a marked template and its values (domain/messages.py)."""


class NotFoundError(Translatable, LookupError):
    """No such record (a message, or a marked template and its values)."""


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def dialect_insert(conn: Connection, table: Table) -> Any:
    """INSERT with ON CONFLICT support, in the dialect at hand."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def insert_ignoring_duplicates(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: the first writer wins."""
    if rows:
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(), rows)


def upsert(conn: Connection, table: Table, *, keys: list[str], values: dict[str, Any],
           update: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update."""
    stmt = dialect_insert(conn, table).values(**values)
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update))


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows (every one with the same keys) in the caller's transaction: one COPY on PostgreSQL,
    one executemany of a prepared INSERT on SQLite. Values pass through each column's own bind processor
    (JSON serialiser, SQLite's datetime format), so what is stored is what `insert(table)` would store,
    without SQLAlchemy compiling parameters row by row."""
    if not rows:
        return
    names = list(rows[0])
    processors = [(i, p) for i, p in enumerate(bind_processor(conn, table, n) for n in names) if p is not None]

    # the same object in the same column (the batch's one timestamp) is converted once
    last: dict[int, tuple[Any, Any]] = {}

    def values(row: dict[str, Any]) -> list[Any]:
        out = [row[n] for n in names]
        for i, process in processors:
            value = out[i]
            seen = last.get(i)
            if seen is not None and seen[0] is value:
                out[i] = seen[1]
                continue
            out[i] = process(value)  # None too: a JSON column stores JSON null, as insert() does
            last[i] = (value, out[i])
        return out

    insert_rows(conn, table, names, [tuple(values(row)) for row in rows])


def bind_processor(conn: Connection, table: Table, name: str) -> Callable[[Any], Any] | None:
    """The function that turns a Python value of column `name` into what the driver is given (None: the
    value as it is), in the dialect at hand: what `insert(table)` would apply."""
    return table.c[name].type._cached_bind_processor(conn.dialect)


def bind_value(conn: Connection, table: Table, name: str, value: Any) -> Any:
    """One value of column `name` as the driver is given it (a batch's one timestamp, converted once)."""
    process = bind_processor(conn, table, name)
    return value if process is None else process(value)


def json_serializer(conn: Connection) -> Callable[[Any], str]:
    """The engine's JSON serialiser: what a JSON column's bind processor stores for a value other than None
    (a value serialised with it can be given to `insert_rows` as it is)."""
    dumps = getattr(conn.dialect, "_json_serializer", None)
    if dumps is None:
        import json

        return json.dumps
    return dumps  # type: ignore[no-any-return]


def insert_rows(conn: Connection, table: Table, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows given as value sequences in the order of `names`, each value already in the driver's form
    (see `bind_value`, `json_serializer`), in the caller's transaction: one COPY on PostgreSQL, one
    executemany of a prepared INSERT on SQLite."""
    if isinstance(rows, list) and not rows:
        return
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in names)
    if dialect.name == "postgresql":
        raw: Any = conn.connection.dbapi_connection  # psycopg's own connection, in the caller's transaction
        with raw.cursor() as cur, cur.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        return
    marks = ", ".join("?" for _ in names)
    batch = [row if type(row) is tuple else tuple(row) for row in rows]  # the driver takes tuples
    if batch:
        conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})", batch)


def select_in(conn: Connection, sql: str, keys: list[str]) -> Sequence[Any]:
    """Run `sql`, whose one placeholder `{keys}` stands for a set of text keys, with `keys` bound as a single
    parameter (PostgreSQL: an array; SQLite: a JSON array read by json_each) - one plan, however many keys."""
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql(sql.format(keys="SELECT unnest(%s::text[])"), (list(keys),)).all()
    import json

    return conn.exec_driver_sql(sql.format(keys="SELECT value FROM json_each(?)"), (json.dumps(list(keys)),)).all()
