"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from pipeline.home import create_private_file

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `dmp db upgrade` (once per database, after installing a new version), then this command again"


class SchemaNotReady(Exception):
    """The index's schema is not the one this code was written for: missing (a fresh database),
    older (a new version installed, `dmp db upgrade` forgotten) or newer (an older `dmp` run
    against a migrated database). Not an outage: running the same command again never helps."""


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


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations to `engine`'s database (`dmp db upgrade`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotReady unless the database's Alembic revision is this code's head revision."""
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
