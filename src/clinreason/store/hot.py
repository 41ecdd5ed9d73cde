"""The review path's statements, run on the driver's cursor (issue 16: a lease and a submission are about twenty
statements, and SQLAlchemy's execution machinery cost about ten times what the driver did for each).

`Hot(statement)` wraps a Core statement built once. The first run in a dialect with a given set of parameter
names compiles it there, once: the SQL text, the order of the driver's parameters, the literal values the
statement carries, each parameter's bind processor (SQLite's datetime text, the JSON serialiser) and, at the
first result, each column's result processor. Every later run binds the values, runs the text on the
connection's own DBAPI cursor in the caller's transaction and processes the rows as SQLAlchemy would: the
values a caller reads are those `conn.execute(statement, params)` returns (tests/store/test_hot.py runs every
hot statement both ways).

What it keeps from SQLAlchemy: errors are raised as SQLAlchemy's (IntegrityError, OperationalError ...) through
the connection's own handler, which also invalidates a connection the server dropped; `before_cursor_execute`
listeners are called (the statement counts of benchmarks/review_statements.py). It falls back to
`conn.execute` outside a transaction (autobegin is SQLAlchemy's to do), and for a set of parameter names whose
execution needs more than binding (Python-side column defaults, expanding IN parameters, a required value
missing): that set is remembered as unsupported and `fell_back()` lists it."""

from __future__ import annotations

import weakref
from collections import namedtuple
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement


class _Plan:
    __slots__ = ("sql", "positional", "names", "slots", "processing", "keys", "row_type", "results", "_types")

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str]):
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
        given = set(keys)
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.escaped_bind_names or any(
                b.expanding or (b.required and b.key not in given) for b in compiled.binds.values()):
            raise _Unsupported  # defaults to compute, IN lists to expand, a value missing: SQLAlchemy's to do
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ()) if self.positional \
            else tuple(compiled.bind_names.values())
        base = compiled.construct_params(_check=False)
        processors = compiled._bind_processors
        #: per driver parameter, in order: its name, the value the statement carries, its bind processor
        self.slots = tuple((name, base.get(name), processors.get(name)) for name in self.names)
        self.processing = tuple((i, p) for i, (_, _, p) in enumerate(self.slots) if p is not None)
        entries = compiled._result_columns or []
        self.keys: tuple[str, ...] = tuple(e.keyname for e in entries)
        self.row_type = namedtuple("HotRow", self.keys, rename=True) if self.keys else None
        self.results: list[Callable[[Any], Any] | None] | None = None
        self._types = [e.type for e in entries]

    def bind(self, params: dict[str, Any]) -> Any:
        get = params.get
        values = [get(name, default) for name, default, _ in self.slots]
        for i, process in self.processing:
            values[i] = process(values[i])
        if self.positional:
            return tuple(values)
        return dict(zip(self.names, values, strict=True))

    def result_processors(self, dialect: Dialect, description: Sequence[Any] | None) -> list[Any]:
        if self.results is None:
            coltypes = [d[1] for d in description] if description else [None] * len(self._types)
            self.results = [t._cached_result_processor(dialect, c) for t, c in zip(self._types, coltypes, strict=False)]
        return self.results


class _Unsupported(Exception):
    pass


class HotResult:
    """What the callers of the review path read from a result: rows (attribute and index access), mappings,
    scalars, rowcount."""

    __slots__ = ("_rows", "_keys", "rowcount")

    def __init__(self, rows: list[Any], keys: tuple[str, ...], rowcount: int):
        self._rows, self._keys, self.rowcount = rows, keys, rowcount

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (exc.NoResultFound if not self._rows else exc.MultipleResultsFound)(
                "expected exactly one row")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [r[0] for r in self._rows]

    def mappings(self) -> _Mappings:
        return _Mappings([dict(zip(self._keys, r, strict=True)) for r in self._rows])

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class _Mappings:
    __slots__ = ("_rows",)

    def __init__(self, rows: list[dict[str, Any]]):
        self._rows = rows

    def all(self) -> list[dict[str, Any]]:
        return self._rows

    def first(self) -> dict[str, Any] | None:
        return self._rows[0] if self._rows else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows)


class Hot:
    """A statement of the review path, run on the driver's cursor (see the module's note)."""

    __slots__ = ("statement", "_plans", "_last", "__weakref__")

    #: every hot statement made (module constants and a few cached builders): tests check each runs on the cursor
    made: weakref.WeakSet[Hot] = weakref.WeakSet()

    def __init__(self, statement: Any):
        self.statement = statement
        self._last: tuple[Dialect, tuple[str, ...], _Plan | None] | None = None  # the plan used last
        Hot.made.add(self)
        self._plans: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, ...], _Plan | None]] = \
            weakref.WeakKeyDictionary()

    def fell_back(self) -> list[tuple[str, ...]]:
        """The parameter sets this statement was run with that it could not run on the cursor."""
        return [keys for by_keys in self._plans.values() for keys, plan in by_keys.items() if plan is None]

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
        last = self._last
        if last is not None and last[0] is dialect and last[1] == keys:
            return last[2]
        by_keys = self._plans.get(dialect)
        if by_keys is None:
            by_keys = self._plans[dialect] = {}
        if keys not in by_keys:
            try:
                by_keys[keys] = _Plan(self.statement, dialect, keys)
            except _Unsupported:
                by_keys[keys] = None
        self._last = (dialect, keys, by_keys[keys])
        return by_keys[keys]

    def run(self, conn: Connection, params: dict[str, Any] | None = None) -> Any:
        """Run the statement in `conn`'s transaction; returns a HotResult (or SQLAlchemy's own result where it
        falls back to `conn.execute`: both answer all/first/one/scalar/scalar_one/mappings/rowcount)."""
        params = params or {}
        if not conn.in_transaction():
            return conn.execute(self.statement, params)
        dialect = conn.dialect
        plan = self._plan(dialect, tuple(params))  # a call site passes its names in one order
        if plan is None:
            return conn.execute(self.statement, params)
        bound = plan.bind(params)
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            if conn.dispatch.before_cursor_execute:
                for listener in conn.dispatch.before_cursor_execute:
                    listener(conn, cursor, plan.sql, bound, None, False)
            cursor.execute(plan.sql, bound)
            if plan.row_type is None:
                return HotResult([], (), cursor.rowcount)
            fetched = cursor.fetchall()
            rowcount = cursor.rowcount
            processors = plan.result_processors(dialect, cursor.description)
        except dialect.loaded_dbapi.Error as e:
            conn._handle_dbapi_exception(e, plan.sql, bound, cursor, None)
        finally:
            cursor.close()
        make = plan.row_type
        if any(p is not None for p in processors):
            rows = [make(*[v if p is None else p(v) for p, v in zip(processors, row, strict=True)])
                    for row in fetched]
        else:
            rows = [make(*row) for row in fetched]
        return HotResult(rows, plan.keys, rowcount)
