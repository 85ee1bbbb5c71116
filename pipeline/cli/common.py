"""What the commands share: failing with one clear line, and the Runtime a command opens from its Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

from pipeline.core.settings import Settings

if TYPE_CHECKING:  # imported when a command runs: `dmp --help` needs no database driver
    from pipeline.runtime import Runtime


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command: `error: message` on stderr, exit `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def open_runtime(settings: Settings) -> Runtime:
    """The Runtime for a command; in embedded mode the local index and keys are set up on the way,
    otherwise the index's schema must already be this version's (`dmp db upgrade`)."""
    from pipeline.index.db import check_schema
    from pipeline.runtime import Runtime

    prepare = settings.embedded_broker and not settings.database_url
    rt = Runtime.from_settings(settings, prepare=prepare)
    if not prepare:
        check_schema(rt.engine)
    return rt


def reading_runtime(settings: Settings) -> Runtime:
    """The Runtime for a command that only reads: it never creates a home, it says there is no data here."""
    if not settings.database_url and not settings.embedded_index_file().is_file():
        fail(
            f"no DMP data here: no index in {settings.home.resolve()}; run dmp from the folder where you ran "
            "`dmp ingest` or `make demo`, or set DMP_HOME (or DMP_DATABASE_URL)"
        )
    return open_runtime(settings)
