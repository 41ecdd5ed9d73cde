"""Engine creation and schema upgrades. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import weakref
from collections import deque
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

try:
    import fcntl
except ImportError:  # Windows: SQLite's own lock serialises the processes
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# ensure_ascii=False keeps Chinese text readable in the database; it round-trips byte-exact. One encoder,
# built once: json.dumps with arguments builds a new one per call, a cost paid per JSON column per row.
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def normalise_url(url: str) -> str:
    """Accept a plain file path as a SQLite database; map postgres:// schemes onto psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=_json_dumps,
            connect_args={"timeout": 60, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    # pool_pre_ping: a pooled connection that a database restart cut is noticed at checkout and replaced
    # (a disconnect seen mid-query invalidates the whole pool: SQLAlchemy's default), so the first request
    # after a restart works instead of failing on a dead socket. connect_timeout bounds how long a
    # connection attempt to an unreachable host waits before it is reported as unavailable.
    connect_args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(url, echo=echo, json_serializer=_json_dumps, pool_pre_ping=True, connect_args=connect_args)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE for every transaction (one writer at a time, no
    lock-upgrade deadlocks: a writer waits on busy_timeout instead of failing half-way)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


#: the execution option `reading` sets: on SQLite that connection's transactions begin DEFERRED
READ_ONLY = "clinreason_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A unit of work that only reads (a bearer token's check on every API request): no write turn. On
    SQLite a deferred transaction, which in WAL mode neither waits for the writer nor holds it up; on
    PostgreSQL an ordinary transaction. Writing through it is a mistake (on SQLite it may fail with
    SQLITE_BUSY instead of queueing)."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def tune_for_scratch(engine: Engine) -> None:
    """A throw-away SQLite file (the simulator's): no fsync at all (synchronous=OFF; a crash may corrupt
    it, which costs nothing but a rerun) and a 64 MiB page cache. Never for a database anyone keeps.
    Register before the engine's first connection."""
    if not is_sqlite(engine):
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()


def refresh_statistics(conn: Connection) -> None:
    """Let the query planner see the tables' current shape (ANALYZE). Without statistics SQLite guesses,
    and for the review-candidate query it guesses an index on (reviewer_id, status), a scan of every lease
    the reviewer ever held per candidate, instead of the one on (rationale_id, status)."""
    conn.exec_driver_sql("ANALYZE")


def existing_tables(engine: Engine) -> list[str]:
    """The names of the tables already in the database (none: an empty database)."""
    return sorted(inspect(engine).get_table_names())


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to `revision`."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def snapshot_engine(engine: Engine) -> Engine:
    """A second engine on the same SQLite file whose transactions begin DEFERRED: a long read (an export)
    sees one consistent snapshot (WAL) without holding the write lock. Dispose of it after use."""
    reader = create_engine(engine.url, json_serializer=_json_dumps,
                           connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(reader, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(reader, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return reader


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent read-only view that never blocks writers (an export, a dry-run import): on
    PostgreSQL a REPEATABLE READ read-only transaction; on SQLite (WAL) a deferred transaction on a
    connection of its own (the application engine begins every transaction IMMEDIATE, which would take the
    write lock)."""
    if not is_sqlite(engine):
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        return
    reader = snapshot_engine(engine)
    try:
        with reader.connect() as conn:
            yield conn
    finally:
        reader.dispose()


class FairLock:
    """A re-entrant lock handed to waiters in arrival order (threading.RLock lets a busy thread barge in
    again and again, which starves others: multi-second tails under load).

    With `path`, the turn also spans processes: its owner holds an exclusive flock on that file from its
    first entry to its last exit. Another process's writer then blocks in the kernel and is woken the
    moment the turn is released, where BEGIN IMMEDIATE alone would leave it sleeping in SQLite's busy
    handler (1, 2, 5 … 100 ms naps) while the file lock lies free. The flock is released at every last
    exit, even with waiters here, so a busy process cannot keep the turn from the others. Where the file
    cannot be opened (a read-only folder) or there is no flock (Windows), SQLite's own lock is the only
    one, as before."""

    def __init__(self, path: str | None = None) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[tuple[int, threading.Event]] = deque()
        self._owner: int | None = None
        self._depth = 0
        self._path = path if fcntl is not None else None
        self._fd: int | None = None

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self._guard:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None:
                self._owner, self._depth = me, 1
                ready = None
            else:
                ready = threading.Event()
                self._waiters.append((me, ready))
        if ready is not None:
            ready.wait()  # __exit__ made us the owner before setting the event
        try:
            self._take_file()
        except BaseException:
            self._depth = 1
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            self._depth -= 1
            if self._depth:
                return
            self._drop_file()
            if self._waiters:
                self._owner, ready = self._waiters.popleft()
                self._depth = 1
                ready.set()
            else:
                self._owner = None

    def _take_file(self) -> None:
        if self._path is None:
            return
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                log.info("no cross-process write turn for %s (%s): SQLite's lock alone serialises writers",
                         self._path, exc)
                self._path = None
                return
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the GIL

    def _drop_file(self) -> None:
        if self._fd is not None and self._path is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


_COORDINATORS: dict[str, FairLock] = {}
_COORDINATORS_GUARD = threading.Lock()
#: each engine's lock, found once: resolving the file's path costs three system calls per transaction
_ENGINE_LOCKS: weakref.WeakKeyDictionary[Engine, FairLock] = weakref.WeakKeyDictionary()


def _sqlite_file(engine: Engine) -> str | None:
    """The database file's resolved path, or None for an in-memory or URI-named database."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:") or engine.url.query.get("uri"):
        return None
    return os.path.realpath(database)


def write_coordinator(engine: Engine) -> AbstractContextManager[Any]:
    """The one write turn for this database. SQLite allows one writer per file and every transaction here
    begins IMMEDIATE, so this process's writers (web requests, the in-process worker, screening, import)
    queue on one fair lock, and the processes on one file (`serve --workers N`, a worker beside the web
    app) on one flock beside it (`<file>-turn`), instead of sleeping in SQLite's busy handler. Engines on
    the same file share it. On PostgreSQL there is nothing to coordinate: a no-op."""
    if not is_sqlite(engine):
        return nullcontext()
    lock = _ENGINE_LOCKS.get(engine)
    if lock is not None:
        return lock
    path = _sqlite_file(engine)
    key = path or engine.url.render_as_string(hide_password=False)
    with _COORDINATORS_GUARD:
        lock = _COORDINATORS.get(key)
        if lock is None:
            lock = _COORDINATORS[key] = FairLock(path + "-turn" if path else None)
        _ENGINE_LOCKS[engine] = lock
    return lock


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One unit of work that writes: takes the process's write turn (SQLite), commits on success, rolls
    back on any exception."""
    with write_coordinator(engine), engine.begin() as conn:
        yield conn


# --- the database going away ------------------------------------------------------------------------

#: what a driver says when the server is down, restarting, unreachable or cut the connection
_UNAVAILABLE_SIGNS = ("database is locked", "database is busy", "could not connect", "connection refused",
                      "server closed the connection", "connection timed out", "the database system is",
                      "terminating connection", "connection is closed", "connection failed", "connection is lost",
                      "no connection to the server", "consuming input failed", "sending query failed")


def database_unavailable(exc: BaseException) -> bool:
    """The database is down, restarting, unreachable or busy past its timeout (an error worth retrying
    once it answers again), as opposed to a broken query or schema (a bug)."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):  # InterfaceError: "the connection is closed"
        return False
    if exc.connection_invalidated:
        return True
    message = str(exc.orig).lower()
    return any(sign in message for sign in _UNAVAILABLE_SIGNS)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time up to min(cap, first * 2**n),
    so that many workers coming back after a restart do not all knock at the same instant."""

    first: float = 0.25
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.first / 2, min(self.cap, self.first * 2 ** attempt))


DEFAULT_BACKOFF = Backoff()


async def while_unavailable(call: Callable[[], Awaitable[T]], *, what: str, stop: asyncio.Event | None = None,
                            backoff: Backoff = DEFAULT_BACKOFF) -> T:
    """`await call()`, again and again with backoff for as long as it fails because the database is not
    answering (`database_unavailable`); any other error is raised at once. `call` must be safe to repeat:
    a transaction that failed was rolled back, and one whose COMMIT went through unacknowledged is met
    by the compare-and-set and unique keys of what it wrote. When `stop` is set the last error is raised
    instead of waiting for the database (a stopping worker does not hang on an outage)."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not database_unavailable(exc) or (stop is not None and stop.is_set()):
                raise
            wait = backoff.delay(attempt)
            attempt += 1
            log.warning("%s: the database is not answering (%s); attempt %d again in %.1f s", what,
                        error_summary(exc), attempt + 1, wait)
            if stop is None:
                await asyncio.sleep(wait)
            elif await pause(stop, wait):
                raise exc


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`, or less if `stop` is set meanwhile; whether it was set (a stopping loop ends at once
    instead of sleeping out its poll interval or backoff)."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def error_summary(exc: BaseException) -> str:
    """The first line of what the driver said (for a log line)."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]


def ping(engine: Engine) -> None:
    """One round trip to the database (raises what the driver raises when it does not answer)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
