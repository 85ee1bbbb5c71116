"""A few hot statements run straight on the driver's cursor, below SQLAlchemy's execution machinery.

The list route runs two statements per request (the access's judging statement, then the audit entry's insert
that reads the page beside it). Through `Session.execute`, SQLAlchemy's execution context, result metadata
(the cursor's description turned into some 40 column objects per statement) and Row objects cost more of the
route's CPU than the driver and its round trips. `rows` compiles such a statement once per dialect and runs it
on the session's own connection (its transaction, or its autocommit) with the values bound and read back through
the very type processors SQLAlchemy applies, its rows named tuples of the same fields, in the same order.

What SQLAlchemy would do besides is kept: the engine's `before_cursor_execute` and `after_cursor_execute` listeners
are called (tests count and interleave statements with them), a driver error is raised as SQLAlchemy's own class
(an `IntegrityError` stays one) and a connection found dead is invalidated. Only for statements built once (held in
a module, `functools.cache`): each is compiled once and kept for the process. A statement this cannot run this
way (a positional driver such as SQLite's, values rendered at execution, an ORM entity among its columns, names
a tuple cannot take) runs through `Session.execute` as before.
"""

from __future__ import annotations

import collections
import functools
import keyword
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

if TYPE_CHECKING:
    from sqlalchemy import Connection, Executable
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.sql.compiler import SQLCompiler

log = logging.getLogger(__name__)
# A value's bind processor, or a column's result processor (SQLAlchemy's types'), None when there is none.
_Processor = Callable[[Any], Any] | None


@dataclass
class _Prepared:
    """A statement compiled for one dialect: its SQL, how its values are bound, and (once a first execution gave the
    driver's column types) how its rows are read."""

    compiled: SQLCompiler
    sql: str
    # (name in the SQL, key in the caller's values, its value when the caller gives none, bind processor)
    binds: tuple[tuple[str, str, Any, _Processor], ...]
    required: frozenset[str]
    fields: tuple[str, ...]
    make: Callable[[Iterable[Any]], tuple[Any, ...]]
    # Set at the first execution: (position, processor) of the columns that have a result processor.
    readers: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None


# Keyed by the statement (by identity) and the dialect's name: a process has one engine per database.
_PREPARED: dict[tuple[int, str], _Prepared | None] = {}
_KEEP: dict[int, Executable] = {}  # the statements keyed, kept alive so that their ids are never reused
_LOCK = threading.Lock()
_UNSET = object()


def rows(session: Session, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
    """`session.execute(statement, params).all()`, as named tuples, run on the session's connection's driver
    cursor when the statement allows it (see the module's docstring). `statement`: one built once per process."""
    connection = session.connection()
    dialect = connection.dialect
    key = (id(statement), dialect.name)
    prepared = _PREPARED.get(key, _UNSET)
    if prepared is _UNSET:
        prepared = _prepare(statement, dialect)
        with _LOCK:
            _KEEP[id(statement)] = statement
            _PREPARED[key] = prepared
    if prepared is None:
        return session.execute(statement, params).all()
    assert isinstance(prepared, _Prepared)
    return _run(connection, prepared, params)


def _prepare(statement: Executable, dialect: Dialect) -> _Prepared | None:
    """The statement compiled for `dialect`, or None when it must run through the Session (see the module). This reads
    attributes of SQLAlchemy's compiled form that are not its public API: should a release change them, the statement
    runs through the Session (slower, never wrong), logged once, and `tests/index/test_direct.py` fails."""
    try:
        return _compiled(statement, dialect)
    except (AttributeError, TypeError, KeyError) as error:
        log.warning("a statement runs through the Session: SQLAlchemy's compiled form is not as expected (%r)", error)
        return None


def _compiled(statement: Executable, dialect: Dialect) -> _Prepared | None:
    if dialect.paramstyle != "pyformat" or statement._propagate_attrs.get("compile_state_plugin") == "orm":
        return None  # positional values; or ORM entities, each read as several columns into one object
    compiled = cast("SQLCompiler", cast(ClauseElement, statement).compile(dialect=dialect))  # a SELECT or an INSERT's
    if compiled.positional or compiled.literal_execute_params or compiled.post_compile_params or not compiled._result_columns:
        return None
    columns = compiled._result_columns
    fields = tuple(column.keyname for column in columns)
    plain = all(name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_") for name in fields)
    if not plain or len(set(fields)) != len(fields):
        return None
    processors = compiled._bind_processors
    binds: dict[str, tuple[str, str, Any, _Processor]] = {}
    required: set[str] = set()
    for bind, name in compiled.bind_names.items():
        if bind.callable is not None:
            return None  # a value computed at each execution: SQLAlchemy's to compute
        processor = processors.get(name)
        if processor is not None and not callable(processor):
            return None  # a tuple's values, each its own processor: not here
        escaped = compiled.escaped_bind_names.get(name, name)
        binds[escaped] = (escaped, bind.key, _UNSET if bind.required else bind.effective_value, processor)
        if bind.required:
            required.add(bind.key)
    return _Prepared(compiled, compiled.string, tuple(binds.values()), frozenset(required), fields, row_maker(fields))


@functools.cache
def row_maker(fields: tuple[str, ...]) -> Callable[[Iterable[Any]], tuple[Any, ...]]:
    """A maker of named tuples with `fields` as attributes, one class per shape of row (`DirectRow`)."""
    make: Callable[[Iterable[Any]], tuple[Any, ...]] = getattr(collections.namedtuple("DirectRow", fields), "_make")  # noqa: B009  # made at run time: mypy knows no _make on it
    return make


def _values(prepared: _Prepared, params: Mapping[str, Any]) -> dict[str, Any]:
    """The driver's values: the caller's by each bind's key, else the statement's own; through the bind processors."""
    missing = prepared.required - params.keys()
    if missing:
        raise KeyError(f"values missing for {sorted(missing)}")
    values = {}
    for name, key, default, processor in prepared.binds:
        value = params.get(key, default)
        values[name] = processor(value) if processor is not None and value is not None else value
    return values


def _readers(prepared: _Prepared, dialect: Dialect, description: Sequence[Any]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """The result processors of the statement's columns, given the driver's types (as SQLAlchemy's result metadata)."""
    columns = prepared.compiled._result_columns
    if len(description) != len(columns):
        raise RuntimeError(f"{len(description)} columns read, {len(columns)} compiled")
    read = []
    for n, (column, described) in enumerate(zip(columns, description, strict=True)):
        processor = column.type._cached_result_processor(dialect, described[1])  # by the driver's type code
        if processor is not None:
            read.append((n, processor))
    return tuple(read)


def _run(connection: Connection, prepared: _Prepared, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    values = _values(prepared, params)
    driver = connection.connection.driver_connection
    assert driver is not None
    dispatch = connection.dispatch
    with driver.cursor() as cursor:
        for listener in dispatch.before_cursor_execute:
            listener(connection, cursor, prepared.sql, values, None, False)
        try:
            cursor.execute(prepared.sql, values)
            fetched = cursor.fetchall()  # (`rows` is for statements that return rows)
        except connection.dialect.loaded_dbapi.Error as error:
            raise _translated(connection, cursor, prepared.sql, values, error) from error
        for listener in dispatch.after_cursor_execute:
            listener(connection, cursor, prepared.sql, values, None, False)
        if prepared.readers is None:
            prepared.readers = _readers(prepared, connection.dialect, cursor.description or ())
    make, readers = prepared.make, prepared.readers
    if not readers:
        return [make(row) for row in fetched]
    read = []
    for row in fetched:
        row_values = list(row)
        for n, processor in readers:
            row_values[n] = processor(row_values[n])
        read.append(make(row_values))
    return read


def _translated(connection: Connection, cursor: Any, sql: str, values: Mapping[str, Any], error: Exception) -> StatementError:
    """A driver's error as SQLAlchemy raises it (`IntegrityError` for a unique violation…), the connection
    invalidated if the error says it is dead."""
    dialect = connection.dialect
    dead = dialect.is_disconnect(cast(Any, error), connection.connection.dbapi_connection, cursor)
    if dead:
        connection.invalidate(error)
    return DBAPIError.instance(sql, values, error, dialect.loaded_dbapi.Error, connection_invalidated=dead, dialect=dialect)
