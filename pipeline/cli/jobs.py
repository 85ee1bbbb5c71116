"""`dmp retention run|schedule` and `dmp notify run`: the periodic jobs, run once or scheduled on the workers."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from pipeline.cli.common import fail, open_runtime
from pipeline.core.settings import Settings


def retention_run(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delete care history older than 24 months, records closed over 10 years ago, expired quarantine.

    Safe to run while ingestion and reads go on (short transactions). Schedule it daily, e.g.
    cron `0 3 * * * dmp retention run`, or let the workers do it: `dmp retention schedule`.
    """
    from pipeline.core.clock import paris_date
    from pipeline.retention import record_run, run_retention

    rt = open_runtime(Settings())
    today = paris_date()
    report = run_retention(rt, today)
    record_run(rt, "retention", today)  # the last run's time is a metric: a missed run raises an alert
    rt.close()
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
        return
    typer.echo(f"care history: {report.care_events_deleted} events older than the window deleted")
    for patient_id in report.records_destroyed:
        typer.echo(f"record destroyed: patient {patient_id}")
    for item_id in report.quarantine_purged:
        typer.echo(f"quarantine removed: item {item_id}")
    typer.echo(f"notifications: {report.notifications_deleted} messages older than DMP_NOTIFY_KEEP_DAYS deleted")
    typer.echo(f"idempotency keys: {report.idempotency_keys_deleted} older than a week forgotten")
    for key in report.uploads_purged:
        typer.echo(f"abandoned upload removed: {key}")


def retention_schedule() -> None:
    """Start the daily retention job on the workers (03:00 Europe/Paris, then every day)."""
    settings = Settings()
    if settings.embedded_broker:
        fail("scheduling needs the workers (DMP_BROKER_URL); in embedded mode use cron with `dmp retention run`")
    from pipeline.workers.wiring import wire

    wiring = wire(settings)
    wiring.actors.retention.send()
    wiring.close()
    typer.echo("retention job sent: it runs now, then daily at 03:00 Europe/Paris")


def notify_run(
    flush: Annotated[bool, typer.Option(help="Do not wait for the coalescing window or for batches still in flight.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send the notifications that are due, once. Workers and API processes also do it on their own."""
    from pipeline.notify.channels import channels_from_settings
    from pipeline.notify.dispatch import dispatch

    settings = Settings()
    rt = open_runtime(settings)
    report = dispatch(rt, channels_from_settings(settings), flush=flush)
    rt.close()
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
        return
    typer.echo(f"notifications: {report.composed} composed, {report.sent} sent, {report.retrying} to retry, {report.failed} failed")
