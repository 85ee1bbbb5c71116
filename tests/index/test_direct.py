"""Statements run on the driver's cursor (pipeline/index/direct.py) read what `Session.execute` reads: the same
values of the same types under the same names, errors of the same classes, seen by the engine's listeners."""

from __future__ import annotations

import os
from typing import cast

import pytest
from sqlalchemy import Table, bindparam, event, insert, literal, select
from sqlalchemy.exc import IntegrityError

from pipeline.access.audit import AuditEvent, append
from pipeline.index import direct
from pipeline.index.models import AuditEntry
from pipeline.runtime import Runtime

_ENTRIES = cast(Table, AuditEntry.__table__)  # the table's own columns: a Core statement
# Built once, as `direct.rows` asks: every column of the entries (UTC moments, bytes, booleans, NULLs), a value of the
# statement's own (an anonymous bind) and one a float's processor reads by the driver's type.
_CHAIN = (
    select(*_ENTRIES.c, literal(0.5).label("weight"))
    .where(_ENTRIES.c.chain == bindparam("chain"), _ENTRIES.c.outcome != "unknown")
    .order_by(_ENTRIES.c.seq)
)
_INSERT = insert(_ENTRIES).values({c.name: bindparam(c.name) for c in _ENTRIES.c if c.name != "id"}).returning(_ENTRIES.c.id)
KEY = os.urandom(32)


def _chain(rt: Runtime) -> str:
    with rt.sessions.begin() as session:
        for n, justification in enumerate([None, "urgence vitale", None]):
            event_ = AuditEvent(chain="patient-1", actor_id=f"doctor-{n}", actor_kind="professional", profession=None,
                                action="list", document_id=None, outcome="allowed", reason="care_team",
                                justification=justification)  # fmt: skip
            append(session, KEY, event_, record_key=KEY)
    return "patient-1"


def test_rows_are_those_the_session_reads(rt):
    chain = _chain(rt)
    with rt.reads() as session:
        expected = session.execute(_CHAIN, {"chain": chain}).all()
        read = direct.rows(session, _CHAIN, {"chain": chain})
        again = direct.rows(session, _CHAIN, {"chain": chain})  # compiled and typed once, read the same
    assert len(read) == 3 and read == again
    assert (type(read[0]).__name__ == "DirectRow") == (rt.engine.dialect.name == "postgresql")  # SQLite's: the Session's
    assert [tuple(row) for row in read] == [tuple(row) for row in expected]
    assert read[0]._fields == tuple(expected[0]._fields)
    assert [[type(value) for value in row] for row in read] == [[type(value) for value in row] for row in expected]
    assert read[1].justification_sealed is not None and read[0].at.tzinfo is not None


def test_a_unique_violation_is_sqlalchemys_integrity_error_and_the_session_reads_on(rt):
    chain = _chain(rt)
    with rt.reads() as session:
        first = session.execute(_CHAIN, {"chain": chain}).first()
        assert first is not None
        taken = {name: value for name, value in first._mapping.items() if name not in ("id", "weight")}
        with pytest.raises(IntegrityError):
            direct.rows(session, _INSERT, taken)
        session.rollback()
        assert len(direct.rows(session, _CHAIN, {"chain": chain})) == 3


def test_the_engines_listeners_see_each_statement(rt):
    chain = _chain(rt)
    statements: list[str] = []
    event.listen(rt.engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: statements.append(statement))
    with rt.reads() as session:
        direct.rows(session, _CHAIN, {"chain": chain})
    assert len(statements) == 1 and "FROM audit_entries" in statements[0]


def test_a_statement_built_once_runs_on_the_drivers_cursor_on_postgresql_and_through_the_session_on_sqlite(rt):
    chain = _chain(rt)
    with rt.reads() as session:
        read = direct.rows(session, _CHAIN, {"chain": chain})
    # Below the Session the rows are named tuples made for the statement; through it, SQLAlchemy's Rows.
    below = rt.engine.dialect.name == "postgresql"
    assert [type(row).__name__ for row in read] == ["DirectRow" if below else "Row"] * 3
