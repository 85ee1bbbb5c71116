"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from pipeline.core.home import create_private_file

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
    from sqlalchemy.pool import ConnectionPoolEntry

    from pipeline.core.keys import KeyProvider

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `dmp db upgrade` (once per database, after installing a new version), then this command again"


class SchemaNotReady(Exception):
    """The index's schema is not the one this code was written for: missing (a fresh database),
    older (a new version installed, `dmp db upgrade` forgotten) or newer (an older `dmp` run
    against a migrated database). Not an outage: running the same command again never helps."""


class KeysRequired(RuntimeError):
    """A migration must encrypt existing rows and was given no master keys (the key file or KMS)."""


def make_engine(url: str, pool_size: int = 16) -> Engine:
    """An engine tuned for the pipeline: SQLite in WAL mode with a busy timeout, pooled PostgreSQL.

    `pool_size` should cover the threads of a process that use the database at once (the API's thread
    pool serves 40): connections beyond it are opened and closed per use, and a PostgreSQL connection
    costs a backend process each time.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            create_private_file(Path(path))  # it holds patient data: owner-only, and so are its journals
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # Through an outage: a pooled connection idle for a while is checked before use (`_ping_if_idle`);
    # connecting to a server that does not answer gives up after 10 s, and a connection whose server
    # vanished without a word is found dead by TCP keepalives within a minute instead of hanging its thread.
    liveness = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    # LIFO: the connection just returned is the next handed out, so under load the same few stay hot and
    # skip the ping, and the others idle (and are pinged when they are needed again).
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True, connect_args=liveness)
    event.listen(engine, "checkin", _returned)
    event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect))
    return engine


# A pooled connection returned less than this long ago is handed out without a ping. A ping is a round
# trip of its own (a third of a short request's), and a connection that just worked is alive but for a
# server that died in that second: then its first statement fails as any statement in flight would (an
# outage the caller waits out), and SQLAlchemy drops every older connection of the pool with it.
PING_IDLE_SECONDS = 1.0


def _returned(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
    record.info["returned_at"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object) -> None:
    """Check a connection that idled in the pool with the dialect's own ping (what `pool_pre_ping` does, an
    empty query outside any transaction): a dead one raises DisconnectionError, and the pool hands out a
    fresh connection instead."""
    returned_at = record.info.get("returned_at")
    if returned_at is None or time.monotonic() - returned_at < PING_IDLE_SECONDS:
        return  # just connected, or just used
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as error:  # the driver's own errors: whatever they are, the connection is not usable
        raise DisconnectionError(f"a pooled connection failed its ping: {error}") from error


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


T = TypeVar("T")
# The conflicts a unit of work may meet and win on a second try: another writer took the same unique position
# (an audit chain's next entry, a row inserted concurrently). The unit runs again from the start, reading afresh.
RETRIABLE: tuple[type[Exception], ...] = (IntegrityError,)


def _jitter(state: RetryCallState) -> float:
    # A few milliseconds, growing with each attempt, random so that the writers that clashed do not clash again.
    return random.uniform(0, 0.005 * state.attempt_number)


def transact(
    sessions: sessionmaker[Session], work: Callable[[Session], T], *, retries: int = 0, retry_on: tuple[type[Exception], ...] = RETRIABLE
) -> T:
    """Run `work` in a session of its own, commit, and return what it returned: one unit of work, one transaction.

    On a conflict in `retry_on` (a unique constraint another writer won) the transaction is rolled back and
    `work` runs again in a new session, up to `retries` more times; the last conflict is raised. `work` must
    therefore only write through its session (it may run more than once). A unit that decides to write
    nothing rolls back itself; the commit then has nothing to do.
    """
    for attempt in Retrying(stop=stop_after_attempt(retries + 1), retry=retry_if_exception_type(retry_on), wait=_jitter, reraise=True):
        with attempt, sessions() as session:
            result = work(session)
            session.commit()
            return result
    raise AssertionError("unreachable: the last attempt returns or raises")


def upgrade(engine: Engine, revision: str = "head", keys: KeyProvider | None = None) -> None:
    """Apply the Alembic migrations to `engine`'s database (`dmp db upgrade`), in one transaction.

    `keys` (the master keys) lets a migration seal existing rows (0007 seals titles and contacts);
    without them such a migration raises KeysRequired if there is anything to seal, and nothing is applied.
    """
    _run(engine, "upgrade", revision, keys)


def downgrade(engine: Engine, revision: str, keys: KeyProvider | None = None) -> None:
    """Undo migrations down to `revision` (for tests and rollbacks), in one transaction."""
    _run(engine, "downgrade", revision, keys)


def _run(engine: Engine, direction: str, revision: str, keys: KeyProvider | None) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection, _transactional_ddl(connection), connection.begin():
        config.attributes["connection"] = connection
        config.attributes["keys"] = keys
        getattr(command, direction)(config, revision)


@contextmanager
def _transactional_ddl(connection: Connection) -> Iterator[None]:
    """All the migrations of one run in one transaction on SQLite too.

    Python's sqlite3 opens a transaction only before DML, so an ALTER TABLE that comes first commits
    on its own: a migration failing later in the run (0007 without keys) would leave the earlier ones
    half applied. Here the driver is told to leave transactions to us and SQLAlchemy's begin() is
    preceded by an explicit BEGIN, which its commit or rollback then ends.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = cast(sqlite3.Connection, connection.connection.driver_connection)  # the SQLite branch: pysqlite's
    previous = driver.isolation_level
    driver.isolation_level = None
    driver.execute("BEGIN")
    try:
        yield
    finally:
        if driver.in_transaction:
            driver.rollback()
        driver.isolation_level = previous


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotReady unless the database's Alembic revision is this code's head revision.

    The usual answer, "it is", is found without alembic: the database's `alembic_version` against the head the
    migration files name (`file_heads`). Importing alembic and reading the migrations took ~0.2 s of CPU, on a feed
    intake's way to its first chunk (the workers wait meanwhile). Anything else, alembic tells.
    """
    heads = file_heads()
    if heads and _current_revisions(engine) == heads:  # no heads read: alembic decides (an empty version table too)
        return
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == set(script.get_heads()):
        return
    if not current:
        raise SchemaNotReady(f"the index database has no schema yet: {UPGRADE_HINT}")
    known = {revision.revision for revision in script.walk_revisions()}
    if current <= known:
        raise SchemaNotReady(f"the index schema is older than this version of dmp: {UPGRADE_HINT}")
    raise SchemaNotReady("the index schema is newer than this version of dmp: run the version that migrated it (or a later one)")


_REVISION_LINE = re.compile(r'^(revision|down_revision) = (?:"([^"]*)"|None)$', re.MULTILINE)


def file_heads() -> set[str]:
    """The head revisions of the migration files, from their `revision = "…"` and `down_revision = "…"` lines read
    as text (the revisions no file follows); an empty set if a file names them any other way (then alembic decides).
    tests/index/test_migrations.py checks it against alembic's own reading."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        named = dict(_REVISION_LINE.findall(path.read_text()))
        if "revision" not in named or "down_revision" not in named:
            return set()
        revisions.add(named["revision"])
        followed.add(named["down_revision"])
    return revisions - followed


def _current_revisions(engine: Engine) -> set[str] | None:
    """The database's revisions as `alembic_version` holds them; None if it cannot be read (no schema yet, an outage:
    alembic's way tells which)."""
    try:
        with engine.connect() as connection:
            return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:
        return None
