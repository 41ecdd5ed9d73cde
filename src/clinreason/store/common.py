"""What every store module shares: the errors callers catch, the clock, ids, and dialect-aware inserts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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
