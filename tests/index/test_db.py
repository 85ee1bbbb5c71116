"""pipeline.index.db.make_engine on PostgreSQL: a pooled connection that idled is pinged (and replaced when its
server side is gone), one just returned is handed out as it is."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from infra.services import PostgresDatabase
from pipeline.index import db

pytestmark = pytest.mark.slow  # a database of its own on the machine's PostgreSQL


@pytest.fixture
def engine() -> Iterator[Engine]:
    database = PostgresDatabase()
    try:
        database.start()
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server")
    engine = db.make_engine(database.url)
    yield engine
    engine.dispose()
    database.stop()


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the dialect's pings (the real ones still run)."""
    counted: list[int] = []
    ping = engine.dialect.do_ping

    def counting(dbapi_connection):  # type: ignore[no-untyped-def]
        counted.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return counted


def test_a_connection_just_returned_is_handed_out_again_without_a_ping(engine, pings):
    first = _backend(engine)
    assert [_backend(engine) for _ in range(5)] == [first] * 5  # the same connection (LIFO) …
    assert pings == []  # … never pinged: it has just worked


def test_a_connection_that_idled_is_pinged_before_use(engine, pings, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.05)
    first = _backend(engine)
    time.sleep(0.1)
    assert _backend(engine) == first and len(pings) == 1


def test_a_connection_whose_server_side_ended_while_it_idled_is_replaced_before_use(engine, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.05)
    with engine.connect() as other:  # held while the first one is used and returned: two in the pool
        with engine.connect() as first:
            ended = first.execute(text("SELECT pg_backend_pid()")).scalar_one()
            first.commit()
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": ended})  # its server side ends while it idles
        other.commit()
    time.sleep(0.1)
    with engine.connect() as one, engine.connect() as two:  # both pooled connections handed out again
        backends = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (one, two)}
    assert ended not in backends and len(backends) == 2  # the dead one failed its ping: a fresh one answered
