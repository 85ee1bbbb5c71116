"""`dmp`: the command line. Thin shell over the intake, the workers and the index."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.settings import Settings

# Tracebacks must never print local variables: they can hold patient data.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="DMP: shared medical record ingestion pipeline.",
)
db_app = typer.Typer(no_args_is_help=True, help="Index database.")
keys_app = typer.Typer(no_args_is_help=True, help="Master keys.")
retention_app = typer.Typer(no_args_is_help=True, help="Retention: delete what must no longer be kept.")
audit_app = typer.Typer(no_args_is_help=True, help="The access log (audit trail).")
notify_app = typer.Typer(no_args_is_help=True, help="Patient notifications (email, SMS, local log sink).")
sources_app = typer.Typer(no_args_is_help=True, help="Source credentials: the API keys hospitals, labs and the insurer push with.")
representatives_app = typer.Typer(no_args_is_help=True, help="Legal representatives of a record (a minor's parents, a guardian).")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(retention_app, name="retention")
app.add_typer(audit_app, name="audit")
app.add_typer(notify_app, name="notify")
app.add_typer(sources_app, name="sources")
app.add_typer(representatives_app, name="representatives")


def _runtime(settings: Settings):  # type: ignore[no-untyped-def]
    """The Runtime for a command; in embedded mode the local index and keys are set up on the way,
    otherwise the index's schema must already be this version's (`dmp db upgrade`)."""
    from pipeline.index.db import check_schema
    from pipeline.runtime import Runtime

    prepare = settings.embedded_broker and not settings.database_url
    rt = Runtime.from_settings(settings, prepare=prepare)
    if not prepare:
        check_schema(rt.engine)
    return rt


def _reading_runtime(settings: Settings):  # type: ignore[no-untyped-def]
    """The Runtime for a command that only reads: it never creates a home, it says there is no data here."""
    if not settings.database_url and not settings.embedded_index_file().is_file():
        _fail(
            f"no DMP data here: no index in {settings.home.resolve()}; run dmp from the folder where you ran "
            "`dmp ingest` or `make demo`, or set DMP_HOME (or DMP_DATABASE_URL)"
        )
    return _runtime(settings)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@app.command()
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
    from sqlalchemy.exc import DBAPIError

    from pipeline.carehistory.feedformat import FeedError
    from pipeline.core.home import HomeError
    from pipeline.core.keys import KeyFileError
    from pipeline.core.outage import outage_of
    from pipeline.core.reasons import Transient
    from pipeline.index.db import SchemaNotReady, check_schema
    from pipeline.ingest.feed_intake import receive_feed
    from pipeline.ingest.intake import IntakeInterrupted, ManifestError, receive_batch
    from pipeline.progress import taking_in
    from pipeline.sources import SourceError, parse_source
    from pipeline.status import any_status
    from pipeline.workers.wiring import wire

    try:
        kind, _ = parse_source(source)
    except SourceError as exc:
        _fail(str(exc))
    if not path.exists():
        _fail(f"{path} does not exist")
    settings = Settings()
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
                batch = receive_batch(rt, path, source, wiring.send_item, progress=progress)
                ref, total, sent, resumed = batch.batch_id, batch.total, len(batch.sent), batch.resumed
    except (ManifestError, SourceError, KeyFileError, FeedError, SchemaNotReady, HomeError) as exc:
        if worker is not None:
            worker.stop()
        _fail(str(exc))
    except IntakeInterrupted as exc:
        if worker is not None:
            worker.stop()
        _fail(f"a service stayed unavailable ({exc}); nothing is lost: run the same command again to resume", 3)
    except (Transient, DBAPIError) as exc:
        if worker is not None:
            worker.stop()
        # DBAPIError texts can quote row values (patient data): name the failure, not the details.
        code = str(exc) if isinstance(exc, Transient) else f"database_unavailable:{type(exc.orig).__name__}"
        _fail(f"a service is unavailable ({code}); run the same command again to resume", 3)
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
    from pipeline.ingest.client import ApiError, check_source, plan, send, status_counts
    from pipeline.ingest.intake import ManifestError
    from pipeline.progress import transfer, watch
    from pipeline.sources import SourceError, parse_source

    try:
        parse_source(source)
    except SourceError as exc:
        _fail(str(exc))
    if not key:
        _fail("--api needs the source's API key: --key or DMP_API_KEY (made by `dmp sources add`)")
    if not path.exists():
        _fail(f"{path} does not exist")
    try:
        submission = plan(path, source)
        check_source(api_url, key, source)
        with transfer(submission.size, f"upload {path.name}") as progress:
            answer = send(api_url, key, submission, on_bytes=progress.advance, on_restart=progress.restart)
    except ManifestError as exc:
        _fail(str(exc))
    except ApiError as exc:
        _fail(str(exc), 3 if exc.code == "api_unavailable" else 2)
    summary = {**answer, "mode": "api"}
    if wait:
        seen: list = []

        def poll():  # type: ignore[no-untyped-def]
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


def _run_embedded(wiring, worker, batch_id: str, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    from pipeline.progress import watch
    from pipeline.status import Counts, any_counts

    def drain() -> None:
        wiring.broker.join(wiring.settings.queue_name, fail_fast=False)

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


def _print_summary(status: dict) -> None:
    if status["kind"] == "feed":
        counts = status["counts"]
        typer.echo(f"feed {status['feed']} ({status['source']}): {status['total']} lines, {counts['accepted']} stored, "
                   f"{counts['unchanged']} already known, {counts['rejected']} rejected")  # fmt: skip
        for rejection in status["rejections"]:
            typer.echo(f"  rejected line {rejection['line_number']}: {rejection['reason']} - {rejection['message']}")
        return
    items = status["items"]
    indexed = [i for i in items if i["state"] == "indexed"]
    rejected = [i for i in items if i["state"] == "rejected"]
    typer.echo(f"batch {status['batch']} ({status['source']}): {len(items)} items, {len(indexed)} indexed, {len(rejected)} rejected")
    by_class = Counter((i["class_code"], i["type_code"]) for i in indexed)
    for (class_code, type_code), count in sorted(by_class.items()):
        typer.echo(f"  indexed  class {class_code} type {type_code}: {count}")
    for item in rejected:
        typer.echo(f"  rejected {item['file']}: {item['reason']} - {item['message']}")
    pending = [i for i in items if i["state"] not in ("indexed", "rejected")]
    if pending:
        typer.echo(f"  {len(pending)} still pending: run `dmp ingest` on the same batch again to resume")


@app.command()
def status(
    ref: Annotated[str, typer.Argument(metavar="BATCH", help="Batch or feed id printed by dmp ingest.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per-document states and reasons of a batch; per-line rejections of a feed."""
    from pipeline.status import UnknownBatch, any_status

    rt = _reading_runtime(Settings())
    try:
        with rt.sessions() as session:
            result = any_status(session, ref)
    except UnknownBatch:
        _fail(f"no batch or feed {ref}", 1)
    if as_json:
        typer.echo(json.dumps(result))
        return
    if result["kind"] == "feed":
        _print_summary(result)
        return
    for item in result["items"]:
        if item["state"] == "rejected":
            detail = f"{item['reason']}: {item['message']}"
        elif item["state"] == "indexed":
            detail = f"class {item['class_code']} type {item['type_code']}"
        else:
            detail = ""
        typer.echo(f"{item['state']:<10} {item['file']:<40} {detail}")
    typer.echo(f"{result['total']} items: " + ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items())))


@app.command()
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option(help="Threads per process.")] = 2,
    child: Annotated[bool, typer.Option("--child", hidden=True, help="Run one worker process (started by the parent).")] = False,
) -> None:
    """Run the workers (distributed mode: needs DMP_BROKER_URL); a worker process that dies is replaced."""
    if Settings().embedded_broker:
        _fail("dmp worker needs DMP_BROKER_URL (redis://…); in embedded mode dmp ingest runs its own worker")
    from pipeline.workers.supervisor import run_child, supervise

    if child:
        raise typer.Exit(run_child(max(1, threads)))
    # A dead worker process is replaced (and logged), not a reason to stop the others.
    raise typer.Exit(supervise(max(1, processes), max(1, threads), [sys.executable, sys.argv[0], "worker", "--child"]))


@app.command()
def samples(
    out: Annotated[Path, typer.Argument(help="Folder to write (must not exist or be empty).")],
    patients: Annotated[int, typer.Option()] = 20,
    documents: Annotated[int, typer.Option()] = 200,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a synthetic batch (PDFs, CDA, a few bad files) with manifest.csv and expected.csv."""
    from pipeline.samples import generate_samples

    try:
        summary = generate_samples(out, patients=patients, documents=documents, seed=seed)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {summary.documents} manifest rows for {summary.patients} patients to {out}")
    typer.echo(f"expected: {summary.good} indexed, {summary.bad} rejected (see {out / 'expected.csv'})")


@app.command()
def demo(documents: Annotated[int, typer.Option()] = 60, patients: Annotated[int, typer.Option()] = 8) -> None:
    """Generate samples and run the embedded pipeline on them."""
    from pipeline.core.home import prepare_home

    settings = Settings()
    if not settings.embedded_broker:
        _fail("dmp demo runs in embedded mode: unset DMP_BROKER_URL")
    prepare_home(settings.home)  # before the samples are written in it: the home is owner-only
    out = settings.home / "demo-batch"
    shutil.rmtree(out, ignore_errors=True)
    samples(out, patients=patients, documents=documents, seed=0)
    ingest(out, source="hospital:DEMO-CHU", as_json=False, threads=2)
    from api.demo import run_api_demo

    run_api_demo(settings, typer.echo)


@db_app.command("upgrade")
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
        _fail(f"{missing} (nothing was changed)")
    finally:
        engine.dispose()
    typer.echo("index schema is up to date")


@retention_app.command("run")
def retention_run(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Delete care history older than 24 months, records closed over 10 years ago, expired quarantine.

    Safe to run while ingestion and reads go on (short transactions). Schedule it daily, e.g.
    cron `0 3 * * * dmp retention run`, or let the workers do it: `dmp retention schedule`.
    """
    from pipeline.core.clock import paris_date
    from pipeline.retention import run_retention

    rt = _runtime(Settings())
    report = run_retention(rt, paris_date())
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


@retention_app.command("schedule")
def retention_schedule() -> None:
    """Start the daily retention job on the workers (03:00 Europe/Paris, then every day)."""
    settings = Settings()
    if settings.embedded_broker:
        _fail("scheduling needs the workers (DMP_BROKER_URL); in embedded mode use cron with `dmp retention run`")
    from pipeline.workers.wiring import wire

    wiring = wire(settings)
    wiring.actors.retention.send()
    wiring.close()
    typer.echo("retention job sent: it runs now, then daily at 03:00 Europe/Paris")


@notify_app.command("run")
def notify_run(
    flush: Annotated[bool, typer.Option(help="Do not wait for the coalescing window or for batches still in flight.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send the notifications that are due, once. Workers and API processes also do it on their own."""
    from pipeline.notify.channels import channels_from_settings
    from pipeline.notify.dispatch import dispatch

    settings = Settings()
    rt = _runtime(settings)
    report = dispatch(rt, channels_from_settings(settings), flush=flush)
    rt.close()
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
        return
    typer.echo(f"notifications: {report.composed} composed, {report.sent} sent, {report.retrying} to retry, {report.failed} failed")


@audit_app.command("verify")
def audit_verify(
    chain: Annotated[str | None, typer.Option(help="Only this patient's chain.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check every audit chain's keyed hashes; report the first broken link of each broken chain (exit 1)."""
    from pipeline.access.audit import verify

    rt = _reading_runtime(Settings())
    with rt.sessions() as session:
        broken = verify(session, rt.audit_key, chain)
    rt.close()
    if as_json:
        typer.echo(json.dumps({"ok": not broken, "broken": [dataclasses.asdict(link) for link in broken]}))
    elif not broken:
        typer.echo("audit chains intact")
    for link in broken if not as_json else []:
        typer.echo(f"broken: chain {link.chain} at seq {link.seq} (entry {link.entry_id}): {link.problem}")
    if broken:
        raise typer.Exit(1)


@sources_app.command("add")
def sources_add(source: Annotated[str, typer.Argument(metavar="KIND:ID", help="hospital:ID, lab:ID or insurer:ID")]) -> None:
    """Create the source's API key and print it, once: only a keyed hash of it is kept."""
    from pipeline.sources import SourceError, SourceExists, add_source

    rt = _runtime(Settings())
    try:
        with rt.sessions() as session:
            key = add_source(session, rt.hmac_secret, source)
    except (SourceError, SourceExists) as exc:
        _fail(str(exc))
    finally:
        rt.close()
    typer.echo(f"API key for {source} (shown once; send it as Authorization: Bearer <key>):", err=True)
    typer.echo(key)


@sources_app.command("revoke")
def sources_revoke(source: Annotated[str, typer.Argument(metavar="KIND:ID")]) -> None:
    """Revoke the source's API key at once (`dmp sources add` then makes a new one)."""
    from pipeline.sources import revoke_source

    rt = _runtime(Settings())
    with rt.sessions() as session:
        revoked = revoke_source(session, source)
    rt.close()
    if not revoked:
        _fail(f"{source} has no active key", 1)
    typer.echo(f"{source}: key revoked")


@sources_app.command("list")
def sources_list() -> None:
    """Every source with its key id, creation and revocation times (never the secret)."""
    from pipeline.sources import list_sources

    rt = _reading_runtime(Settings())
    with rt.sessions() as session:
        rows = list_sources(session)
    rt.close()
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        typer.echo(f"{row.id:<40} key {row.key_id}  created {row.created_at:%Y-%m-%d %H:%M}  {state}")


_INS = Annotated[str, typer.Argument(metavar="INS", help="The patient's INS (NIR with its key).")]
_REPRESENTATIVE = Annotated[str, typer.Argument(metavar="ID", help="The representative's id: the subject of their tokens.")]


def _on_representatives(work, *, reading: bool = False):  # type: ignore[no-untyped-def]
    """Run `work(session)` on the index; a malformed INS or id ends the command with its reason."""
    from pipeline.access.representatives import RepresentativeError

    rt = (_reading_runtime if reading else _runtime)(Settings())
    try:
        with rt.sessions() as session:
            return work(session)
    except RepresentativeError as exc:
        _fail(str(exc))
    finally:
        rt.close()


@representatives_app.command("add")
def representatives_add(ins: _INS, actor_id: _REPRESENTATIVE) -> None:
    """Register a legal representative: they read the record as the patient does, except what the patient hides from them."""
    from pipeline.access.representatives import add_representative

    patient_id = _on_representatives(lambda session: add_representative(session, ins, actor_id))
    typer.echo(f"{actor_id}: legal representative of record {patient_id}")


@representatives_app.command("remove")
def representatives_remove(ins: _INS, actor_id: _REPRESENTATIVE) -> None:
    """Withdraw a legal representative (exit 1 if they were not registered)."""
    from pipeline.access.representatives import remove_representative

    if not _on_representatives(lambda session: remove_representative(session, ins, actor_id)):
        _fail(f"{actor_id} is not a registered representative of this record", 1)
    typer.echo(f"{actor_id}: no longer a legal representative")


@representatives_app.command("list")
def representatives_list(ins: _INS) -> None:
    """The record's legal representatives, one id per line."""
    from pipeline.access.representatives import list_representatives

    for actor_id in _on_representatives(lambda session: list_representatives(session, ins), reading=True):
        typer.echo(actor_id)


@keys_app.command("init")
def keys_init() -> None:
    """Create the key file (mode 0600) if it does not exist; share it with every worker machine."""
    from pipeline.core.keys import load_key_file

    path = Settings().resolved_key_file()
    existed = path.exists()
    content = load_key_file(path, create=True)
    typer.echo(f"key file {path} {'already existed' if existed else 'created'} (active master key {content.active_id})")


@keys_app.command("rotate")
def keys_rotate(
    resume: Annotated[bool, typer.Option("--resume", help="Only re-wrap what an interrupted rotation left.")] = False,
) -> None:
    """Add a new master key and re-wrap every record key under it (objects are not rewritten), and the
    keys it wraps directly: professionals' contact keys and batch keys.

    Resumable: run it again (or with --resume) after an interruption. Safe while reads and
    ingestion go on: old master keys stay in the key file for unwrapping.
    """
    from rich.progress import Progress

    from pipeline.core.keys import add_master_key
    from pipeline.core.sealedfields import batch_key_context, contact_key_context
    from pipeline.index.models import Batch, Contact
    from pipeline.index.recordkeys import rewrap_direct_keys

    settings = Settings()
    if not resume and not settings.kms_key_id:
        new_id = add_master_key(settings.resolved_key_file())
        typer.echo(f"new active master key {new_id}")
    rt = _runtime(settings)
    total = rt.record_keys.pending_rewrap()
    with Progress(disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("re-wrapping record keys", total=total)
        done = rt.record_keys.rewrap(on_progress=lambda n: bar.advance(task, n))
    # The keys sealing professionals' addresses and waiting items' titles (pipeline/core/sealedfields.py).
    direct = rewrap_direct_keys(rt.sessions, rt.keys, Contact, contact_key_context)
    direct += rewrap_direct_keys(rt.sessions, rt.keys, Batch, batch_key_context)
    rt.close()
    typer.echo(f"{done} record keys and {direct} contact and batch keys re-wrapped under master key {rt.keys.active_id}")


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="Subject: the patient id, or the professional's RPPS, or an organisation id.")],
    kind: Annotated[str, typer.Option(help="patient, legal_representative, professional, emergency_regulator, ...")],
    profession: Annotated[str | None, typer.Option(help="For professionals: physician, nurse, pharmacist, ...")] = None,
    specialty: Annotated[str | None, typer.Option()] = None,
    rpps: Annotated[str | None, typer.Option(help="For professionals (defaults to --sub).")] = None,
    facility: Annotated[str | None, typer.Option(help="The actor's facility, e.g. hospital:CHU-NANTES.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a bearer token with the embedded signing key, for trying the API out (not for production)."""
    from api.auth import AuthError, mint_token

    settings = Settings()
    if kind == "professional" and rpps is None:
        rpps = sub
    try:
        typer.echo(
            mint_token(settings, sub, kind, profession=profession, specialty=specialty, rpps=rpps, facility_id=facility, ttl_seconds=ttl)
        )
    except (AuthError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (each with its own pools).")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log one line per request (method, path, status).")] = True,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    from api.server import serve

    settings = Settings()
    if not settings.embedded_broker or settings.database_url:  # embedded: the app prepares its own index
        _runtime(settings).close()  # the index reachable and its schema this version's, before serving
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    typer.echo(f"DMP API on {base} (interactive documentation: {base}/docs, OpenAPI: {base}/openapi.json); Ctrl-C stops it")
    serve(host, port, workers, access_log=access_log)


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


if __name__ == "__main__":
    main()
