"""`dmp`: the command line, the entry layer. Thin shells over the intake, the workers, the features and the index.

Each module holds the commands of one concern; this one builds the command tree from them (the
whole `dmp` surface, in one place) and `main`, the console script. Each command builds its
Settings once and passes them in. Nothing else under `pipeline/` imports this package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

import typer

from pipeline.cli import db, ingest, jobs, keys, operate, records, samples, server, worker
from pipeline.core.settings import Settings

# Tracebacks must never print local variables: they can hold patient data.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="DMP: shared medical record ingestion pipeline.",
)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False) -> None:
    from pipeline.core.logs import configure_logging

    # DMP_LOG_FORMAT: json, text, or auto (text on a terminal, JSON otherwise).
    configure_logging(Settings().log_format, logging.INFO if verbose else logging.WARNING, replace=False)


for command in (ingest.ingest, ingest.status, worker.worker, samples.samples, samples.demo, server.token, server.api):
    app.command()(command)
for operator_command in (operate.batches, operate.items, operate.requeue, operate.review):  # README "Operate"
    app.command()(operator_command)
app.command()(jobs.scheduler)


def _group(name: str, help_text: str, commands: dict[str, Callable[..., None]]) -> None:
    group = typer.Typer(no_args_is_help=True, help=help_text)
    for command_name, command in commands.items():
        group.command(command_name)(command)
    app.add_typer(group, name=name)


_group("db", "Index database.", {"upgrade": db.db_upgrade})
_group("store", "Object store.", {"init": db.store_init})
_group("keys", "Master keys.", {"init": keys.keys_init, "rotate": keys.keys_rotate})
_group("retention", "Retention: delete what must no longer be kept.", {"run": jobs.retention_run, "schedule": jobs.retention_schedule})
_group("audit", "The access log (audit trail).", {"verify": records.audit_verify})
_group("notify", "Patient notifications (email, SMS, local log sink).", {"run": jobs.notify_run, "failed": operate.notify_failed})
_group(
    "sources",
    "Source credentials: the API keys hospitals, labs and the insurer push with.",
    {"add": records.sources_add, "revoke": records.sources_revoke, "list": records.sources_list},
)
_group(
    "representatives",
    "Legal representatives of a record (a minor's parents, a guardian).",
    {"add": records.representatives_add, "remove": records.representatives_remove, "list": records.representatives_list},
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dmp` console script: known failures become one clear line and an exit code."""
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    from pipeline.core.home import HomeError
    from pipeline.core.keys import KeyFileError, KeyProviderError
    from pipeline.index.db import SchemaNotReady

    try:
        app(args=argv, standalone_mode=True)
    except (KeyFileError, KeyProviderError, HomeError, SchemaNotReady) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except ValidationError as exc:  # a DMP_* setting out of bounds: its name and why, never its value
        problems = "; ".join(
            f"{'DMP_' + '_'.join(map(str, e['loc'])).upper() if e['loc'] else 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        typer.echo(f"error: invalid configuration: {problems}", err=True)
        raise SystemExit(2) from None
    except DBAPIError as exc:
        # The driver's text can quote the URL or row values: name the failure only.
        typer.echo(f"error: database unavailable ({type(exc.orig).__name__}); check DMP_DATABASE_URL", err=True)
        raise SystemExit(3) from None
