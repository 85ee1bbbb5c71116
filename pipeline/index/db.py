"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, pool_size: int = 16) -> Engine:
    """An engine tuned for the pipeline: SQLite in WAL mode with a busy timeout, pooled PostgreSQL.

    `pool_size` should cover the threads of a process that use the database at once (the API's thread
    pool serves 40): connections beyond it are opened and closed per use, and a PostgreSQL connection
    costs a backend process each time.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # Through an outage: a pooled connection is checked before use (pool_pre_ping); connecting to a
    # server that does not answer gives up after 10 s, and a connection whose server vanished without
    # a word is found dead by TCP keepalives within a minute instead of hanging its thread.
    liveness = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, connect_args=liveness)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations to `engine`'s database (`dmp db upgrade`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
