"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from pipeline.keys import KeyProvider

MIGRATIONS = Path(__file__).parent / "migrations"


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
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


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
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["keys"] = keys
        getattr(command, direction)(config, revision)
