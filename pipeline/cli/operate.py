"""`dmp batches`, `items`, `requeue`, `review`, `notify failed`: the operator's commands, thin shells
over pipeline/operations (README "Operate"). Each prints JSON with `--json`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Annotated

import typer

from pipeline.cli.common import fail, reading_runtime
from pipeline.core.settings import Settings


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, default=str))


def _day(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
    except ValueError:
        fail(f"{option} takes a date, YYYY-MM-DD")


def batches(
    source: Annotated[str | None, typer.Option(help="Only this source (hospital:ID, lab:ID, insurer:ID).")] = None,
    state: Annotated[str | None, typer.Option(help="in_progress or done.")] = None,
    since: Annotated[str | None, typer.Option(help="Received on or after this day (YYYY-MM-DD, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Received before this day (YYYY-MM-DD, UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List batches and feeds, newest first, with their items' counts by state."""
    from pipeline.operations.work import WorkState, list_batches

    if state is not None and state not in set(WorkState):
        fail(f"--state is one of {', '.join(WorkState)}")
    rt = reading_runtime(Settings())
    with rt.sessions() as session:
        rows = list_batches(
            session,
            source=source,
            state=WorkState(state) if state else None,
            since=_day(since, "--since"),
            until=_day(until, "--until"),
            limit=limit,
        )
    rt.close()
    if as_json:
        _echo_json({"batches": rows})
        return
    for row in rows:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(row["counts"].items()))
        typer.echo(
            f"{row['kind']:<5} {row['id']} {row['source']:<24} {row['received_at'][:19]} {row['state']:<11} {row['total']} ({counts})"
        )
    if not rows:
        typer.echo("no batch or feed matches")


def items(
    stuck_for: Annotated[
        float | None, typer.Option(help="Stuck: processing for longer than this many minutes (default DMP_STUCK_AFTER_SECONDS).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Only rejected items with this reason code.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stuck items (processing for too long) and rejected ones, by reason."""
    from pipeline.operations.work import rejected_by_reason, rejected_items, stuck_items

    settings = Settings()
    older_than = dt.timedelta(minutes=stuck_for) if stuck_for is not None else dt.timedelta(seconds=settings.stuck_after_seconds)
    rt = reading_runtime(settings)
    with rt.sessions() as session:
        result = {
            "stuck_after_seconds": older_than.total_seconds(),
            "stuck": stuck_items(session, older_than, limit=limit),
            "rejected_by_reason": rejected_by_reason(session),
            "rejected": rejected_items(session, reason=reason, limit=limit),
        }
    rt.close()
    if as_json:
        _echo_json(result)
        return
    typer.echo(f"stuck (processing for more than {older_than}): {len(result['stuck'])}")
    for row in result["stuck"]:
        typer.echo(f"  {row['item']} batch {row['batch']} {row['file']} since {row['started_at']} (attempts {row['attempts']})")
    typer.echo("rejected by reason: " + (", ".join(f"{r} {n}" for r, n in sorted(result["rejected_by_reason"].items())) or "none"))
    for row in result["rejected"]:
        typer.echo(f"  {row['item']} batch {row['batch']} {row['file']}: {row['reason']}")


def requeue(
    item_ids: Annotated[list[str] | None, typer.Argument(metavar="[ITEM]...", help="Items to requeue (default: see the options).")] = None,
    reason: Annotated[
        list[str] | None, typer.Option(help="Rejected items with this reason: retries_exhausted, processing_crashed (default both).")
    ] = None,
    stuck_for: Annotated[float | None, typer.Option(help="Also items processing for longer than this many minutes.")] = None,
    batch: Annotated[str | None, typer.Option(help="Only items of this batch.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be requeued.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Process again the items that ended retries_exhausted or processing_crashed, or are stuck.

    Their bytes come back from the encrypted quarantine copy; in embedded mode they are processed
    now, in distributed mode their messages go to the workers.
    """
    from pipeline.operations.requeue import Requeueable, candidates
    from pipeline.operations.requeue import requeue as requeue_items

    try:
        reasons = tuple(Requeueable(r) for r in reason) if reason else tuple(Requeueable)
    except ValueError:
        fail(f"--reason is one of {', '.join(Requeueable)}")
    settings = Settings()
    rt = reading_runtime(settings)
    stuck_after = dt.timedelta(minutes=stuck_for) if stuck_for is not None else None
    chosen = list(item_ids) if item_ids else candidates(rt, reasons=reasons, stuck_after=stuck_after, batch_id=batch)
    rt.close()
    if dry_run or not chosen:
        _echo_json({"requeued": [], "would_requeue": chosen}) if as_json else typer.echo(f"{len(chosen)} items to requeue: {chosen}")
        return
    from pipeline.workers.wiring import wire

    wiring = wire(settings, prepare=settings.embedded_broker)
    worker = None
    if settings.embedded_broker:
        from dramatiq import Worker

        worker = Worker(wiring.broker, worker_threads=2)
        worker.start()
    report = requeue_items(wiring.runtime(), chosen, wiring.send_item)
    if worker is not None:
        wiring.broker.join(settings.queue_name, fail_fast=False)
        worker.join()
        worker.stop()
    wiring.close()
    result = {"requeued": report.requeued, "skipped": {item: str(why) for item, why in report.skipped.items()}}
    if as_json:
        _echo_json(result)
        return
    typer.echo(f"{len(report.requeued)} items requeued" + (" and processed" if worker is not None else " (the workers take them)"))
    for item, why in report.skipped.items():
        hint = ": send the batch again (dmp ingest on the same folder or zip)" if why == "bytes_gone" else ""
        typer.echo(f"  skipped {item}: {why}{hint}")


def review(
    document: Annotated[str | None, typer.Option("--set", metavar="DOCUMENT", help="The document to classify by hand.")] = None,
    type_code: Annotated[str | None, typer.Option("--type", help="Its type code (document_types.csv).")] = None,
    class_code: Annotated[str | None, typer.Option("--class", help="Its class code (checked against the type's).")] = None,
    operator: Annotated[str | None, typer.Option(help="Who makes the change (audited); default $USER.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The classification review queue (documents flagged needs_review); `--set DOC --type CODE` classifies one (audited)."""
    import getpass

    from pipeline.operations.review import ReviewError, review_queue, set_classification

    rt = reading_runtime(Settings())
    if document is None:
        queue = review_queue(rt)
        rt.close()
        if as_json:
            _echo_json({"review": queue})
            return
        for row in queue:
            typer.echo(f"{row['document']} {row['source']:<24} class {row['class_code']} type {row['type_code']:<10} "
                       f"by {row['classified_by']} ({row['confidence']:.2f})")  # fmt: skip
        typer.echo(f"{len(queue)} documents to review")
        return
    if type_code is None:
        fail("--set needs --type CODE")
    try:
        done = set_classification(rt, document, type_code, operator or getpass.getuser(), class_code)
    except ReviewError as exc:
        fail(str(exc))
    finally:
        rt.close()
    if as_json:
        _echo_json(dataclasses.asdict(done))
    else:
        typer.echo(f"document {done.document}: class {done.class_code} type {done.type_code} (audit entry {done.audit_entry})")


def notify_failed(
    retry: Annotated[bool, typer.Option("--retry", help="Send them again (all, or those named with --id).")] = False,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only this notification (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Notifications that failed for good; `--retry` puts them back in line for the next dispatch."""
    from pipeline.operations.notifications import failed_notifications, retry_failed

    rt = reading_runtime(Settings())
    failed = failed_notifications(rt)
    retried = retry_failed(rt, list(ids) if ids else None) if retry else []
    rt.close()
    if as_json:
        _echo_json({"failed": failed, "retried": retried})
        return
    for row in failed:
        typer.echo(f"{row['notification']} {row['kind']:<20} {row['channel']:<5} attempts {row['attempts']} {row['last_error']}")
    typer.echo(
        f"{len(failed)} failed" + (f"; {len(retried)} put back in line (sent by the next dispatch: dmp notify run)" if retry else "")
    )
