"""`dmp db upgrade`: create or migrate the index schema."""

from __future__ import annotations

import typer

from pipeline.cli.common import fail
from pipeline.core.settings import Settings


def db_upgrade() -> None:
    """Create or migrate the index schema (SQLite or PostgreSQL).

    Migrations that seal existing rows (0007: titles and addresses) need the master keys, read as
    every command reads them (DMP_KEY_FILE, DMP_KMS_KEY_ID); a fresh index needs none.
    """
    from pipeline.core.home import prepare_home
    from pipeline.core.keys import KeyFileError
    from pipeline.index.db import KeysRequired, make_engine, upgrade
    from pipeline.runtime import key_provider

    settings = Settings()
    if not settings.database_url:
        prepare_home(settings.home)
    try:
        keys = key_provider(settings)
    except KeyFileError:
        keys = None  # fine while there is nothing to seal; KeysRequired below says what to do otherwise
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine, keys=keys)
    except KeysRequired as missing:
        fail(f"{missing} (nothing was changed)")
    finally:
        engine.dispose()
    typer.echo("index schema is up to date")


def store_init() -> None:
    """Create the bucket (or folder) documents are stored in, if it does not exist yet.

    A deployment's init step runs it with `db upgrade`, so readiness (`/v1/ready`) finds the store
    before the first upload."""
    from pipeline.core.storage import open_store

    open_store(Settings()).ensure_ready()
    typer.echo("object store is ready")
