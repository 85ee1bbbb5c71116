"""`dmp ingest` and `dmp status`: take a batch or a feed in (here, or through the HTTP API), and follow it."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.common import fail, reading_runtime
from pipeline.core.settings import Settings
from pipeline.index.states import ITEM_FINAL, ItemState, StatusKind

if TYPE_CHECKING:
    import dramatiq

    from pipeline.status import Counts
    from pipeline.workers.wiring import Wiring


def ingest(
    path: Annotated[Path, typer.Argument(help="Batch folder or .zip with manifest.csv; or an insurer feed (.csv, .ndjson).")],
    source: Annotated[str, typer.Option(help="hospital:ID or lab:ID for batches, insurer:ID for feeds")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
    threads: Annotated[int, typer.Option(help="Embedded mode: worker threads.")] = 2,
    api_url: Annotated[str | None, typer.Option("--api", help="Send it to this HTTP API (as the source) instead.")] = None,
    key: Annotated[str | None, typer.Option(envvar="DMP_API_KEY", help="With --api: the source's API key (or DMP_API_KEY).")] = None,
    wait: Annotated[bool, typer.Option(help="With --api: follow the batch until every document is final.")] = False,
) -> None:
    """Ingest a batch or a feed. Embedded: process it to completion. Distributed: enqueue and print its id.

    With --api, upload it through the HTTP API instead; run the same command again to resume an
    interrupted upload (nothing is created twice).
    """
    if api_url is not None:
        _ingest_through_api(path, source, api_url, key, as_json=as_json, wait=wait)
        return
    from pipeline.sources import SourceError, parse_source

    try:
        kind, _ = parse_source(source)
    except SourceError as exc:
        fail(str(exc))
    if not path.exists():
        fail(f"{path} does not exist")
    run_ingest(Settings(), path, source, kind, as_json=as_json, threads=threads)


def run_ingest(settings: Settings, path: Path, source: str, kind: str, *, as_json: bool, threads: int) -> None:
    """Take in `path` from `source` (of `kind`, checked) and, in embedded mode, process it to completion."""
    from sqlalchemy.exc import DBAPIError

    from pipeline.carehistory.feedformat import FeedError
    from pipeline.cli.progress import taking_in
    from pipeline.core.home import HomeError
    from pipeline.core.keys import KeyFileError
    from pipeline.core.outage import outage_of
    from pipeline.core.reasons import Transient
    from pipeline.index.db import SchemaNotReady, check_schema
    from pipeline.ingest.feed_intake import receive_feed
    from pipeline.ingest.intake import IntakeInterrupted, ManifestError, receive_batch
    from pipeline.sources import SourceError
    from pipeline.status import any_status
    from pipeline.workers.wiring import wire

    wiring = wire(settings, prepare=settings.embedded_broker)
    worker = None
    if settings.embedded_broker:
        from dramatiq import Worker

        worker = Worker(wiring.broker, worker_threads=max(1, threads))
        worker.start()
    try:
        rt = wiring.runtime()
        if not wiring.prepare:
            check_schema(rt.engine)  # a forgotten `dmp db upgrade` is not an outage: say so before taking anything in
        rt.store.ensure_ready()
        shown = contextlib.nullcontext(None) if as_json else taking_in(path.name, "lines" if kind == "insurer" else "files")
        with shown as progress:
            if kind == "insurer":
                feed = receive_feed(rt, path, source, wiring.send_chunk, progress=progress)
                ref, total, sent, resumed = feed.feed_id, feed.lines, len(feed.sent), feed.resumed
            else:
                batch = receive_batch(rt, path, source, wiring.send_item, progress=progress, send_many=wiring.send_items)
                ref, total, sent, resumed = batch.batch_id, batch.total, len(batch.sent), batch.resumed
    except (ManifestError, SourceError, KeyFileError, FeedError, SchemaNotReady, HomeError) as exc:
        if worker is not None:
            worker.stop()
        fail(str(exc))
    except IntakeInterrupted as exc:
        if worker is not None:
            worker.stop()
        fail(f"a service stayed unavailable ({exc}); nothing is lost: run the same command again to resume", 3)
    except (Transient, DBAPIError) as exc:
        if worker is not None:
            worker.stop()
        # DBAPIError texts can quote row values (patient data): name the failure, not the details.
        code = str(exc) if isinstance(exc, Transient) else f"database_unavailable:{type(exc.orig).__name__}"
        fail(f"a service is unavailable ({code}); run the same command again to resume", 3)
    summary = {"batch": ref, "total": total, "resumed": resumed, "mode": "embedded" if worker else "distributed"}
    if worker is not None:
        _run_embedded(wiring, worker, ref, quiet=as_json)
    try:
        with rt.sessions() as session:
            status = any_status(session, ref)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        # Everything was taken in: the counts are what cannot be read now, not the batch.
        status = None
        typer.echo(f"warning: the batch was taken in, but its counts cannot be read now (database unavailable): dmp status {ref}", err=True)
    wiring.close()
    if status is not None:
        summary.update(status["counts"])
    if as_json:
        typer.echo(json.dumps(summary))
    elif worker is not None and status is not None:
        _print_summary(status)
    else:
        noun = "lines" if kind == "insurer" else "items"
        typer.echo(f"{'feed' if kind == 'insurer' else 'batch'} {ref}: {total} {noun}, {sent} messages sent to the workers")
        typer.echo(f"follow it with: dmp status {ref}")


def _ingest_through_api(path: Path, source: str, api_url: str, key: str | None, *, as_json: bool, wait: bool) -> None:
    from pipeline.cli.progress import transfer, watch
    from pipeline.ingest.client import ApiError, check_source, plan, send, status_counts
    from pipeline.ingest.intake import ManifestError
    from pipeline.sources import SourceError, parse_source

    try:
        parse_source(source)
    except SourceError as exc:
        fail(str(exc))
    if not key:
        fail("--api needs the source's API key: --key or DMP_API_KEY (made by `dmp sources add`)")
    if not path.exists():
        fail(f"{path} does not exist")
    try:
        submission = plan(path, source)
        check_source(api_url, key, source)
        with transfer(submission.size, f"upload {path.name}") as progress:
            answer = send(api_url, key, submission, on_bytes=progress.advance, on_restart=progress.restart)
    except ManifestError as exc:
        fail(str(exc))
    except ApiError as exc:
        fail(str(exc), 3 if exc.code == "api_unavailable" else 2)
    summary = {**answer, "mode": "api"}
    if wait:
        seen: list[Counts] = []

        def poll() -> Counts:
            seen[:] = [status_counts(api_url, key, answer["status_url"])]
            return seen[0]

        counts = watch(poll, lambda: bool(seen) and seen[0].done >= seen[0].total, answer["batch"][:8])
        summary.update({"indexed": counts.indexed, "rejected": counts.rejected})
    if as_json:
        typer.echo(json.dumps(summary))
        return
    feed = submission.route == "feeds"
    typer.echo(f"{'feed' if feed else 'batch'} {answer['batch']}: {answer['total']} {'lines' if feed else 'items'}"
               f"{' (already received)' if answer.get('resumed') else ''}")  # fmt: skip
    if wait:
        typer.echo(f"{summary['indexed']} {'stored or already known' if feed else 'indexed'}, {summary['rejected']} rejected")
    typer.echo(f"{'details' if wait else 'follow it'} with: GET {answer['status_url']}")


def _run_embedded(wiring: Wiring, worker: dramatiq.Worker, batch_id: str, quiet: bool) -> None:
    from dramatiq.brokers.stub import StubBroker

    from pipeline.cli.progress import watch
    from pipeline.status import any_counts

    broker = wiring.broker
    if not isinstance(broker, StubBroker):
        raise TypeError("an embedded worker runs on the in-process broker only")

    def drain() -> None:
        broker.join(wiring.settings.queue_name, fail_fast=False)

    joiner = threading.Thread(target=drain, daemon=True)
    joiner.start()
    rt = wiring.runtime()

    def poll() -> Counts:
        with rt.sessions() as session:
            return any_counts(session, batch_id)

    if quiet:
        joiner.join()
    else:
        watch(poll, lambda: not joiner.is_alive(), batch_id[:8])
    worker.join()
    worker.stop()


def _print_summary(status: dict[str, Any]) -> None:
    if status["kind"] == StatusKind.FEED:
        counts = status["counts"]
        typer.echo(f"feed {status['feed']} ({status['source']}): {status['total']} lines, {counts['accepted']} stored, "
                   f"{counts['unchanged']} already known, {counts['rejected']} rejected")  # fmt: skip
        for rejection in status["rejections"]:
            typer.echo(f"  rejected line {rejection['line_number']}: {rejection['reason']} - {rejection['message']}")
        return
    items = status["items"]
    indexed = [i for i in items if i["state"] == ItemState.INDEXED]
    rejected = [i for i in items if i["state"] == ItemState.REJECTED]
    typer.echo(f"batch {status['batch']} ({status['source']}): {len(items)} items, {len(indexed)} indexed, {len(rejected)} rejected")
    by_class = Counter((i["class_code"], i["type_code"]) for i in indexed)
    for (class_code, type_code), count in sorted(by_class.items()):
        typer.echo(f"  indexed  class {class_code} type {type_code}: {count}")
    for item in rejected:
        typer.echo(f"  rejected {item['file']}: {item['reason']} - {item['message']}")
    pending = [i for i in items if i["state"] not in ITEM_FINAL]
    if pending:
        typer.echo(f"  {len(pending)} still pending: run `dmp ingest` on the same batch again to resume")


def status(
    ref: Annotated[str, typer.Argument(metavar="BATCH", help="Batch or feed id printed by dmp ingest.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per-document states and reasons of a batch; per-line rejections of a feed."""
    from pipeline.status import UnknownBatch, any_status

    rt = reading_runtime(Settings())
    try:
        with rt.sessions() as session:
            result = any_status(session, ref)
    except UnknownBatch:
        fail(f"no batch or feed {ref}", 1)
    if as_json:
        typer.echo(json.dumps(result))
        return
    if result["kind"] == StatusKind.FEED:
        _print_summary(result)
        return
    for item in result["items"]:
        if item["state"] == ItemState.REJECTED:
            detail = f"{item['reason']}: {item['message']}"
        elif item["state"] == ItemState.INDEXED:
            detail = f"class {item['class_code']} type {item['type_code']}"
        else:
            detail = ""
        typer.echo(f"{item['state']:<10} {item['file']:<40} {detail}")
    typer.echo(f"{result['total']} items: " + ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items())))
