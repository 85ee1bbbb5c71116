"""Ingestion benchmark, distributed mode, on services of its own: redis-server, moto_server (S3) and a
PostgreSQL server (fsync on, pg_stat_statements loaded) behind a proxy that counts round trips.

pipeline: `dmp ingest` + `dmp worker --processes W --threads T` as real processes; documents per
second from the drop (start of the intake) to the last item final.

floor: the work a document needs, with the least machinery, on the same cores and services, in the
same run: W processes of T threads each take their share of the manifest and, per document, check
its metadata, sniff and parse it (the real inspection functions, in-process), classify it, hash it,
encrypt it (the envelope format, 256 KiB segments) and PUT it once to the store; each thread
writes its index rows with one COPY per 100 documents (into a copy of the documents table, its
indexes included, without foreign keys). No broker, no inbox, no per-document transaction.
ratio = pipeline / floor.

Both phases print their parts, measured from outside the processes: CPU per document of our own
processes (intake, workers; floor processes) apart from the services' (redis-server, the PostgreSQL
server, moto_server), the round-trip proxy's and the rest of the machine's (other users), object-
store requests per document (moto_server's request log, by method), SQL statements per document by
kind (pg_stat_statements, for the role the pipeline connects as), commits (COMMIT statements) and
round trips (the proxy) per document.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.measure import CpuMeter, ProcessTeam, RequestLog, RoundTripProxy, reset_statements, statements_by_kind, wait_idle
from infra.services import MotoServer, PostgresCluster, RedisServer, dmp_environment, free_port
from pipeline.core.envelope import EncryptingReader
from pipeline.core.keys import load_key_file
from pipeline.core.reasons import Rejected
from pipeline.core.settings import Settings
from pipeline.documents.classify import classify, needs_content
from pipeline.documents.inspect import InspectLimits, inspect_file
from pipeline.documents.validate import check_metadata, inspect_limits
from pipeline.index.db import make_engine, upgrade
from pipeline.index.repo import FINAL_STATES
from pipeline.samples import generate_samples

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

    from mypy_boto3_s3 import S3Client

DMP = str(Path(sys.executable).with_name("dmp"))
ROLE = "dmp"  # the role the pipeline and the floor connect as: pg_stat_statements counts it alone
FLOOR_ROWS_PER_COPY = 100
SERVICES = ("redis", "postgres", "moto")
SETTLE = 1.0
# The documents columns a deposit fills (the others take their defaults).
DOCUMENT_COLUMNS = (
    "id", "patient_id", "source", "source_document_id", "batch_item_id", "title_sealed", "class_code", "type_code", "classified_by",
    "confidence", "needs_review", "hidden_from_patient_until", "service_date", "author_id", "author_profession", "mime_type", "size",
    "content_hmac", "object_key", "record_key_id", "wrapped_key",
)  # fmt: skip


class _RssWatch(threading.Thread):
    """Samples the RSS of every process in a group; keeps the peak of any single worker process."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                for child in self.root.children(recursive=True):
                    self.peak = max(self.peak, child.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Services


@dataclass
class _Services:
    settings: Settings
    redis: RedisServer
    moto: MotoServer
    postgres: PostgresCluster
    proxy: RoundTripProxy
    requests: RequestLog
    observer: psycopg.Connection[tuple[Any, ...]]  # the benchmark's own connection: as postgres, straight to the server
    observer_pid: int  # its backend, whose CPU is the benchmark's, not the pipeline's

    @property
    def bucket(self) -> str:
        assert self.settings.storage_url is not None  # distributed_settings sets it
        return self.settings.storage_url.removeprefix("s3://")

    def pids(self) -> dict[str, int]:
        assert self.redis.process and self.moto.process and self.proxy.process.pid
        return {
            "redis": self.redis.process.pid,
            "moto": self.moto.process.pid,
            "postgres": self.postgres.postmaster_pid(),
            "proxy": self.proxy.process.pid,
            "observer": self.observer_pid,
        }

    def s3(self) -> S3Client:
        import boto3

        return boto3.client("s3", endpoint_url=self.settings.s3_endpoint, aws_access_key_id=self.settings.s3_access_key,
                            aws_secret_access_key=self.settings.s3_secret_key, region_name=self.settings.s3_region)  # fmt: skip


@contextmanager
def _services(root: Path) -> Iterator[_Services]:
    with ExitStack() as stack:
        redis, moto = RedisServer(root / "redis"), MotoServer(log=root / "moto.log")
        for service in (redis, moto):
            stack.callback(service.stop)
            service.start()
        postgres = PostgresCluster(durable=True, settings={"shared_preload_libraries": "pg_stat_statements"})
        stack.callback(postgres.destroy)
        postgres.init()
        observer = stack.enter_context(psycopg.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/dmp", autocommit=True))
        observer.execute("CREATE EXTENSION pg_stat_statements")
        observer.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER")
        engine = make_engine(f"postgresql+psycopg://{ROLE}@127.0.0.1:{postgres.port}/dmp")
        upgrade(engine)
        engine.dispose()
        observer.execute("CREATE TABLE floor_documents (LIKE documents INCLUDING DEFAULTS INCLUDING INDEXES)")
        proxy = RoundTripProxy(free_port(), postgres.port)
        stack.callback(proxy.stop)
        proxy.start()
        settings = Settings(
            home=root / "home",
            broker_url=redis.url,
            database_url=f"postgresql+psycopg://{ROLE}@127.0.0.1:{proxy.port}/dmp",
            storage_url=f"s3://dmp-bench-{uuid.uuid4().hex[:8]}",
            s3_endpoint=moto.endpoint,
            s3_access_key="bench",
            s3_secret_key="bench",
            key_file=root / "keys.json",
            quarantine_days=7,
        )
        load_key_file(settings.resolved_key_file(), create=True)
        backend = observer.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None  # the query returns one row
        assert moto.log is not None  # started above
        services = _Services(settings, redis, moto, postgres, proxy, RequestLog(moto.log), observer, backend[0])
        client = services.s3()
        for bucket in (services.bucket, services.bucket + "-floor"):
            client.create_bucket(Bucket=bucket)
        yield services


# ---------------------------------------------------------------------------------------------
# One measured phase


@dataclass
class _Phase:
    documents: int
    seconds: float
    cpu: dict[str, float]  # seconds, by process group (our own, each service, proxy, machine)
    window: float  # seconds the CPU was measured over (the phase and a short settling time)
    s3: Counter[str]
    statements: Counter[str]
    round_trips: int
    connections: int


@contextmanager
def _measured(services: _Services, own: dict[str, int], bucket: str) -> Iterator[dict[str, Any]]:
    """Measure what happens inside the block; the block fills `out["documents"]` and may add CPU
    seconds of processes that end inside it (`out["cpu"]`). Afterwards `out["phase"]` is a _Phase."""
    out: dict[str, Any] = {"cpu": {}}
    meter = CpuMeter({**own, **services.pids()})
    since = services.requests.mark()
    reset_statements(services.observer)
    trips, connections = services.proxy.round_trips, services.proxy.connections
    meter.start()
    start = time.monotonic()
    yield out
    seconds = time.monotonic() - start
    time.sleep(SETTLE)  # what the last document's worker does after its final commit (the inbox DELETE)
    cpu = meter.stop()
    window = time.monotonic() - start
    round_trips, opened = services.proxy.round_trips - trips, services.proxy.connections - connections
    statements = statements_by_kind(services.observer, ROLE)
    cpu.update(out["cpu"])
    cpu["postgres"] -= cpu.pop("observer")  # the benchmark's own polling
    requests = services.requests.count(since, bucket)
    out["phase"] = _Phase(out["documents"], seconds, cpu, window, requests, statements, round_trips, opened)


def _parts(phase: _Phase, own: tuple[str, ...]) -> dict[str, Any]:
    n = max(phase.documents, 1)

    def per_doc(value: float, digits: int = 2) -> float:
        return round(value / n, digits)

    cpu = phase.cpu
    ours = sum(cpu[name] for name in own)
    services = sum(cpu[name] for name in SERVICES)
    other = cpu["machine"] - ours - services - cpu["proxy"]
    return {
        "documents": phase.documents,
        "seconds": round(phase.seconds, 2),
        "cpu_ms_per_document": {
            **{name: per_doc(cpu[name] * 1000) for name in own},
            "own_total": per_doc(ours * 1000),
            **{name: per_doc(cpu[name] * 1000) for name in SERVICES},
            "services_total": per_doc(services * 1000),
            "round_trip_proxy": per_doc(cpu["proxy"] * 1000),
        },
        "other_load_cores": round(max(other, 0.0) / phase.window, 2),  # the rest of the machine, meanwhile
        "object_store_requests_per_document": {
            "total": per_doc(sum(v for k, v in phase.s3.items() if k != "errors"), 3),
            **{method: per_doc(count, 3) for method, count in sorted(phase.s3.items())},
        },
        "sql_per_document": {
            "round_trips": per_doc(phase.round_trips),
            "statements": per_doc(sum(phase.statements.values())),
            "commits": per_doc(phase.statements.get("COMMIT", 0)),
            "by_kind": {kind: per_doc(count) for kind, count in sorted(phase.statements.items())},
            "connections_opened": phase.connections,
        },
    }


# ---------------------------------------------------------------------------------------------
# Floor


@dataclass(frozen=True)
class _FloorJob:
    batch: Path
    database_url: str  # psycopg form, through the proxy
    s3: dict[str, Any]  # boto3.client keyword arguments
    bucket: str
    hmac_secret: bytes
    segment_bytes: int
    limits: InspectLimits
    today: dt.date
    processes: int
    threads: int


def _manifest(batch: Path) -> list[dict[str, str]]:
    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _seal_small(key: bytes, plain: bytes, context: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, context.encode())


def _floor_documents(job: _FloorJob, rows: list[dict[str, str]], client: S3Client, connection: psycopg.Connection[Any]) -> int:
    """The necessary work for each document of `rows`; returns how many were stored."""
    patients: dict[str, tuple[str, str, bytes]] = {}  # INS -> patient id, record key id, record key
    pending: list[tuple[object, ...]] = []
    stored = 0

    def flush() -> None:
        with connection.cursor() as cursor, cursor.copy(f"COPY floor_documents ({', '.join(DOCUMENT_COLUMNS)}) FROM STDIN") as copy:
            for row in pending:
                copy.write_row(row)
        connection.commit()
        pending.clear()

    for row in rows:
        path = job.batch / row["file"]
        try:
            meta = check_metadata(row, job.today)
            content = inspect_file(path, row["file"], meta.ins, job.limits, needs_content(row["document_type"] or None))
        except (Rejected, FileNotFoundError):
            continue
        title = row["title"] or content.title
        classification = classify(content.cda_code, row["document_type"] or None, title, row["file"], content.text,
                                  cda_code_system=content.cda_code_system)  # fmt: skip
        data = path.read_bytes()
        if meta.ins not in patients:
            patients[meta.ins] = (str(uuid.uuid4()), str(uuid.uuid4()), AESGCM.generate_key(256))
        patient_id, record_key_id, record_key = patients[meta.ins]
        document_id = str(uuid.uuid4())
        digest = hmac.new(job.hmac_secret, data, hashlib.sha256).hexdigest()
        data_key = AESGCM.generate_key(256)
        context = f"doc:{document_id}|patient:{patient_id}"
        sealed = EncryptingReader(io.BytesIO(data), data_key, f"record:{record_key_id}", context, job.segment_bytes).read()
        object_key = f"docs/{document_id}"
        client.put_object(Bucket=job.bucket, Key=object_key, Body=sealed)
        pending.append((
            document_id, patient_id, "hospital:BENCH-FLOOR", meta.source_document_id, str(uuid.uuid4()),
            _seal_small(record_key, row["title"].encode(), f"title:{document_id}") if row["title"] else None,
            classification.class_code, classification.type_code, classification.rule, classification.confidence,
            classification.needs_review, meta.hold_until, meta.service_date, row["author_id"], row["author_profession"],
            content.mime_type, len(data), digest, object_key, record_key_id, _seal_small(record_key, data_key, context),
        ))  # fmt: skip
        stored += 1
        if len(pending) >= FLOOR_ROWS_PER_COPY:
            flush()
    if pending:
        flush()
    return stored


def _floor_process(job: _FloorJob, share: int, ready: Event, go: Event, results: Queue[Any], leave: Event) -> None:
    """One floor process: connects, waits for `go`, does its share, reports, waits for `leave`."""
    import boto3
    from botocore.config import Config

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    client = boto3.client("s3", config=Config(max_pool_connections=job.threads), **job.s3)
    connections = [psycopg.connect(job.database_url) for _ in range(job.threads)]
    ready.set()
    go.wait()
    mine = _manifest(job.batch)[share :: job.processes]  # its own parse of the manifest, on the clock
    with ThreadPoolExecutor(job.threads) as pool:
        stored = sum(pool.map(lambda t: _floor_documents(job, mine[t :: job.threads], client, connections[t]), range(job.threads)))
    results.put((share, len(mine), stored))
    leave.wait()
    for connection in connections:
        connection.close()


def _floor(services: _Services, batch: Path, processes: int, threads: int) -> tuple[_Phase, int]:
    settings = services.settings
    assert settings.database_url is not None  # distributed_settings sets it
    job = _FloorJob(
        batch=batch,
        database_url=settings.database_url.replace("postgresql+psycopg://", "postgresql://"),
        s3={
            "endpoint_url": settings.s3_endpoint,
            "aws_access_key_id": settings.s3_access_key,
            "aws_secret_access_key": settings.s3_secret_key,
            "region_name": settings.s3_region,
        },  # fmt: skip
        bucket=services.bucket + "-floor",
        hmac_secret=load_key_file(settings.resolved_key_file()).hmac_secret,
        segment_bytes=settings.segment_bytes,
        limits=inspect_limits(settings),
        today=dt.date.today(),
        processes=processes,
        threads=threads,
    )
    team = ProcessTeam(_floor_process, [(job, n) for n in range(processes)])
    try:
        team.start()
        with _measured(services, {f"floor_{n}": pid for n, pid in enumerate(team.pids)}, job.bucket) as out:
            team.go.set()
            reports = team.gather()
            out["documents"] = sum(report[1] for report in reports)
    finally:
        team.close()
    return out["phase"], sum(report[2] for report in reports)


# ---------------------------------------------------------------------------------------------
# Pipeline


def _progress(services: _Services, batch_id: str) -> tuple[int, int]:
    row = services.observer.execute(
        "SELECT count(*) FILTER (WHERE state = ANY(%s)), count(*) FROM batch_items WHERE batch_id = %s", [list(FINAL_STATES), batch_id]
    ).fetchone()
    assert row is not None  # an aggregate returns one row
    return row[0], row[1]


def _wait_final(services: _Services, batch_id: str, timeout: float = 3600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, total = _progress(services, batch_id)
        if done == total:
            return total
        time.sleep(0.1)
    raise TimeoutError(f"batch {batch_id} unfinished after {timeout}s")


def _run_intake(command: list[str], env: dict[str, str], log: Path) -> tuple[str, float]:
    """Run the intake to its end; its stdout and the CPU seconds it and its children spent (wait4)."""
    with log.open("wb") as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"dmp ingest failed ({process.returncode}): {log.read_text()[-2000:]}")
    return out.decode(), usage.ru_utime + usage.ru_stime


def _pipeline(services: _Services, root: Path, batch: Path, workers: int, threads: int) -> dict[str, Any]:
    env = dmp_environment(services.settings)
    with (root / "worker.log").open("wb") as log:
        worker = subprocess.Popen([DMP, "worker", "--processes", str(workers), "--threads", str(threads)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)  # fmt: skip
    watch = _RssWatch(worker.pid)
    watch.start()
    wait_idle(worker.pid)  # the workers boot before the clock starts
    try:
        with _measured(services, {"workers": worker.pid}, services.bucket) as out:
            command = [DMP, "ingest", str(batch), "--source", "hospital:BENCH-PIPE", "--json"]
            stdout, out["cpu"]["intake"] = _run_intake(command, env, root / "intake.log")
            batch_id = json.loads(stdout.strip().splitlines()[-1])["batch"]
            out["documents"] = _wait_final(services, batch_id)
    finally:
        watch.running = False
        worker.terminate()
        worker.wait(timeout=60)
    latencies = sorted(
        row[0]
        for row in services.observer.execute(
            "SELECT extract(epoch FROM finished_at - started_at) * 1000 FROM batch_items"
            " WHERE batch_id = %s AND started_at IS NOT NULL AND finished_at IS NOT NULL",
            [batch_id],
        )
    )
    states = dict(services.observer.execute("SELECT state, count(*) FROM batch_items WHERE batch_id = %s GROUP BY state", [batch_id]))
    return {"phase": out["phase"], "latencies": [float(x) for x in latencies], "peak_rss": watch.peak, "states": states}


def run(documents: int, workers: int, threads: int, patients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-") as tmp:
        root = Path(tmp)
        batch = root / "batch"
        generate_samples(batch, patients=patients, documents=documents, seed=2026)
        with _services(root) as services:
            floor, floor_stored = _floor(services, batch, workers, threads)
            pipe = _pipeline(services, root, batch, workers, threads)
    phase, lat = pipe["phase"], pipe["latencies"]
    value = phase.documents / phase.seconds
    floor_rate = floor.documents / floor.seconds
    return {
        "bench": "ingest",
        "metric": "documents_per_second",
        "value": round(value, 2),
        "unit": "docs/s",
        "floor": round(floor_rate, 2),
        "ratio": round(value / floor_rate, 3),
        "documents": phase.documents,
        "workers": workers,
        "threads": threads,
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
        "worker_peak_rss_mb": round(pipe["peak_rss"] / 2**20, 1),
        "pipeline_seconds": round(phase.seconds, 2),
        "floor_seconds": round(floor.seconds, 2),
        "pipeline_states": pipe["states"],
        "floor_stored": floor_stored,
        "pipeline_parts": _parts(phase, ("intake", "workers")),
        "floor_parts": _parts(floor, tuple(name for name in floor.cpu if name.startswith("floor_"))),
    }
