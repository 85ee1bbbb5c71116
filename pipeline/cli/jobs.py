"""`dmp retention run|schedule`, `dmp notify run` and `dmp scheduler`: the periodic jobs, run once or scheduled."""

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
    from pipeline.index.states import JobName
    from pipeline.retention import record_run, run_retention

    rt = open_runtime(Settings())
    today = paris_date()
    report = run_retention(rt, today)
    record_run(rt, JobName.RETENTION, today)  # the last run's time is a metric: a missed run raises an alert
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
    typer.echo(f"interrupted writes: {report.interrupted_writes_purged} left in the object store removed")


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


def scheduler(
    metrics_port: Annotated[int, typer.Option(help="Port of the Prometheus metrics (/metrics); 0: none.")] = 9300,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    once: Annotated[bool, typer.Option("--once", help="Run today's due jobs once; exit 1 if one failed (a CronJob).")] = False,
) -> None:
    """Run the periodic jobs, a failed run retried with backoff: retention daily at 03:00 Europe/Paris,
    then the whole-log audit verification (`dmp audit verify`, its verdict recorded) at 04:00.

    Needs the `scheduler` extra (pip install 'dmp[scheduler]'). One run per day is recorded in the
    index, so it can run beside `dmp retention schedule` or a second scheduler without doubling runs.
    `--once` runs each job not yet recorded today, in that order, whatever the hour.
    """
    import signal

    try:
        from pipeline.scheduler import Outcome, SchedulerMetrics, new_scheduler, schedule_all
    except ImportError:
        fail("dmp scheduler needs the scheduler extra: pip install 'dmp[scheduler]'")
    from prometheus_client import REGISTRY, start_http_server

    rt = open_runtime(Settings())
    metrics = SchedulerMetrics(REGISTRY)
    jobs = new_scheduler()
    daily = schedule_all(rt, jobs, metrics)
    if once:
        outcomes = [(job.job, job.run()) for job in daily]  # a failed job does not keep the next one from running
        rt.close()
        for name, outcome in outcomes:
            typer.echo(f"{name}: {outcome}")
        raise typer.Exit(1 if any(outcome == Outcome.FAILED for _, outcome in outcomes) else 0)
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host, registry=metrics.registry)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: jobs.shutdown(wait=False))
    typer.echo(
        f"scheduler: retention daily at 03:00, audit verification at 04:00 Europe/Paris; metrics on {metrics_host}:{metrics_port}/metrics"
    )
    try:
        jobs.start()
    finally:
        rt.close()
