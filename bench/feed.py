"""Feed benchmark on PostgreSQL: lines per second from file to committed rows, and peak RSS.

pipeline: `dmp ingest FEED --source insurer:…` plus `dmp worker --processes W` on throwaway
Redis, moto_server and a fresh PostgreSQL database; from the start of the intake to the last
chunk committed.

floor: the same file to committed rows with the least machinery, on as many processes (W), in a
second fresh database on the same server, timed from the file: each process reads its share of the
file (a byte range cut at line ends), cuts it into chunks of DMP_FEED_CHUNK_LINES lines and, per
chunk, parses and checks every line with our own parser (`parse_chunk`, `check_line`), inserts the
chunk's new patients and their record keys (made, wrapped under the master key, their rows stored
with one COPY: sealed details are worth nothing without them), seals each line's details and keys
its content hash under the patient's record key, writes the rows with one COPY, queues the
notification of each patient it has not notified yet (one outbox row per patient and feed: the pipeline's workers
also skip the patients whose row they saw committed) and commits.
No broker, no inbox, no duplicate or correction handling. Each floor process, once started and connected, freezes
its objects out of the garbage collector, as a worker process does after its boot (supervisor.start_worker).

Each part starts on a clean server: a CHECKPOINT before the floor and before the pipeline. The floor's million rows
leave ~1 GB of WAL and dirty pages behind (max_wal_size is 1 GB, shared_buffers 128 MB): without it, the checkpoint
and write-back they owe ran during the pipeline's part, which came second, and at a time that moved from run to run
(other databases on the shared server write too; a CHECKPOINT only settles what is owed at its start).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from sqlalchemy import func, select

from bench.measure import CpuMeter, ProcessTeam, cpu_seconds, wait_idle
from bench.report import print_parts
from infra.services import dmp_environment, throwaway_database, throwaway_services
from pipeline.carehistory.chunkstore import COLUMNS
from pipeline.carehistory.feedformat import CareLine, check_line, csv_header, parse_chunk, split_lines
from pipeline.core.clock import paris_date
from pipeline.core.keys import FileKeyProvider, WrappedKey, new_key
from pipeline.core.sealedfields import DETAILS, LineSealer
from pipeline.index.base import new_id
from pipeline.index.models import CareEvent
from pipeline.index.recordkeys import record_context
from pipeline.index.states import FeedFormat
from pipeline.runtime import Runtime
from pipeline.samples.feed import write_feed
from pipeline.status import pending_chunks

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

DMP = str(Path(sys.executable).with_name("dmp"))
SOURCE = "insurer:FLOOR"


class _PeakRss(threading.Thread):
    """Peak RSS of one process and, separately, of the largest of its descendants."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.own = self.child = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.own = max(self.own, self.process.memory_info().rss)
                for child in self.process.children(recursive=True):
                    self.child = max(self.child, child.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.1)


@dataclass(frozen=True)
class _FloorJob:
    feed: Path
    database_url: str
    processes: int
    chunk_lines: int
    today: dt.date
    key_file: Path


def _share(feed: Path, share: int, shares: int) -> tuple[bytes, int, int]:
    """The header line, and the byte range [start, end) of the `share`-th part of the data lines, cut at line ends."""
    size = feed.stat().st_size
    with feed.open("rb") as handle:
        header = handle.readline()

        def line_start(position: int) -> int:
            if position <= len(header):
                return len(header)
            if position >= size:
                return size
            handle.seek(position - 1)
            return position - 1 + len(handle.readline())

        body = size - len(header)
        return header, line_start(len(header) + body * share // shares), line_start(len(header) + body * (share + 1) // shares)


def _lines(feed: Path, start: int, end: int) -> Iterator[bytes]:
    with feed.open("rb") as handle:
        handle.seek(start)
        position = start
        for line in handle:
            if position >= end:
                return
            position += len(line)
            yield line


def _floor_chunk(
    connection: psycopg.Connection,
    lines: list[CareLine],
    sealers: dict[str, tuple[str, LineSealer]],
    notified: set[str],
    keys: FileKeyProvider,
    feed_id: str,
) -> None:
    new = sorted({line.ins for line in lines} - sealers.keys())
    if new:
        connection.execute(
            "INSERT INTO patients (id, ins, status, created_at) SELECT gen_random_uuid()::text, i, 'open', now()"
            " FROM unnest(%s::text[]) AS i ON CONFLICT (ins) DO NOTHING",
            [new],
        )
        # Each new patient's record key, made and wrapped under the master key, its row stored: the sealed details
        # are worth nothing without it. The other process may make one for the same patient first: its key wins,
        # opened from its row (as the pipeline's `RecordKeys.for_patients` does).
        made: dict[str, tuple[str, bytes]] = {}
        rows: list[tuple[object, ...]] = []
        now = dt.datetime.now(dt.UTC)
        for ins, pid in connection.execute("SELECT ins, id FROM patients WHERE ins = ANY(%s)", [new]):
            key_id, key = new_id(), new_key()
            wrapped = keys.wrap(key, record_context(key_id, pid))
            made[pid] = (ins, key)
            rows.append((key_id, pid, wrapped.key_id, wrapped.blob, now))
        connection.cursor().executemany(
            "INSERT INTO record_keys (id, patient_id, master_key_id, wrapped, created_at) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (patient_id) DO NOTHING",
            rows,
        )
        for key_id, pid, master_key_id, blob in connection.execute(
            "SELECT id, patient_id, master_key_id, wrapped FROM record_keys WHERE patient_id = ANY(%s) AND id <> ALL(%s)",
            [sorted(made), [row[0] for row in rows]],
        ):
            made[pid] = (made[pid][0], keys.unwrap(WrappedKey(master_key_id, blob), record_context(key_id, pid)))
        for pid, (ins, key) in made.items():
            sealers[ins] = (pid, LineSealer(key))
        connection.commit()  # alone: another process inserting the same patient waits for this, not for the COPY
    with connection.cursor() as cursor, cursor.copy(f"COPY care_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for line in lines:
            pid, sealer = sealers[line.ins]
            details = sealer.seal(SOURCE, line.line_id, pid, [getattr(line, name) for name in DETAILS])
            copy.write_row((SOURCE, line.line_id, pid, line.care_date, details, line.amount_billed, line.amount_reimbursed,
                            line.reimbursement_date, line.supersedes, sealer.line_hash(line.content_hash), feed_id))  # fmt: skip
    # The patients' "new reimbursement data" notifications, one per patient and feed, as the pipeline queues them:
    # only for the patients this process has not notified yet (the pipeline's workers skip those they saw committed).
    unnotified = sorted({sealers[line.ins][0] for line in lines} - notified)
    if unnotified:
        connection.execute(
            "INSERT INTO outbox (id, patient_id, kind, ref_id, source, created_at)"
            " SELECT gen_random_uuid()::text, p, 'reimbursement_data', %s, %s, now() FROM unnest(%s::text[]) AS p"
            " ON CONFLICT (patient_id, kind, ref_id) DO NOTHING",
            [feed_id, SOURCE, unnotified],
        )
    connection.commit()
    notified.update(unnotified)


def _floor_process(job: _FloorJob, share: int, ready: Event, go: Event, results: Queue[Any], leave: Event) -> None:
    keys = FileKeyProvider(job.key_file)
    with psycopg.connect(job.database_url) as connection:
        # Its start's objects set aside from the garbage collector, as a worker process's are (supervisor.start_worker).
        gc.collect()
        gc.freeze()
        ready.set()
        go.wait()
        header_line, start, end = _share(job.feed, share, job.processes)
        header = csv_header(header_line)
        sealers: dict[str, tuple[str, LineSealer]] = {}
        notified: set[str] = set()
        stored = rejected = 0
        for first, data, _ in split_lines(_lines(job.feed, start, end), job.chunk_lines, quoted=True):
            lines: list[CareLine] = []
            for number, raw in parse_chunk(data, FeedFormat.CSV, header, first):
                checked = check_line(number, raw, job.today) if isinstance(raw, dict) else None
                if isinstance(checked, CareLine):
                    lines.append(checked)
                else:
                    rejected += 1
            if lines:
                _floor_chunk(connection, lines, sealers, notified, keys, "floor")
            stored += len(lines)
    results.put((stored, rejected))
    leave.wait()  # alive until the CPU meter has read this process (an ended process reads as 0: its CPU went uncounted)


def _floor(database_url: str, feed: Path, processes: int, chunk_lines: int, key_file: Path) -> tuple[float, int, float]:
    """Seconds from the file to committed rows in `processes` floor processes, the rows stored, and the CPU
    seconds those processes spent meanwhile."""
    job = _FloorJob(feed, database_url.replace("postgresql+psycopg://", "postgresql://"), processes, chunk_lines, paris_date(), key_file)
    team = ProcessTeam(_floor_process, [(job, n) for n in range(processes)])
    try:
        team.start()
        cpu = CpuMeter({f"floor{n}": pid for n, pid in enumerate(team.pids)})
        cpu.start()
        start = time.perf_counter()
        team.go.set()
        reports = team.gather()
        seconds = time.perf_counter() - start
        spent = cpu.stop()
    finally:
        team.close()
    return seconds, sum(stored for stored, _ in reports), sum(v for k, v in spent.items() if k != "machine")


def _checkpoint(database_url: str) -> None:
    """Flush what the server owes (WAL, dirty pages), so that the next part does not pay for the last one's writes."""
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("CHECKPOINT")


def _wait_done(rt: Runtime, feed_id: str, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            pending = pending_chunks(session, feed_id)
        if pending == 0:
            return
        time.sleep(0.05)  # the clock's end is late by half of this on average (the floor's is exact)
    raise TimeoutError(feed_id)


@dataclass(frozen=True)
class _Round:
    """One round: the floor's part, then the pipeline's, each on fresh databases and a clean server."""

    floor_s: float
    floor_stored: int
    floor_cpu: float
    elapsed: float
    stored: int
    intake_cpu: float
    worker_cpu: float
    worker_idle: float
    services: dict[str, float]
    intake_rss: int
    worker_rss: int


def _round(root: Path, feed: Path, workers: int, threads: int) -> _Round:
    root.mkdir()
    with throwaway_services(root) as services, throwaway_database() as floor_db:
        settings = services.settings
        _checkpoint(floor_db.url)
        floor_s, floor_stored, floor_cpu = _floor(floor_db.url, feed, workers, settings.feed_chunk_lines, settings.resolved_key_file())

        env = dmp_environment(settings)
        worker = subprocess.Popen([DMP, "worker", "--processes", str(workers), "--threads", str(threads)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        worker_rss = _PeakRss(worker.pid)
        worker_rss.start()
        wait_idle(worker.pid)  # the workers boot before the clock starts (3 s was not enough on a busy machine)
        idle_from = cpu_seconds(worker.pid)
        time.sleep(2)
        worker_idle = (cpu_seconds(worker.pid) - idle_from) / 2  # CPU seconds per second with nothing to do
        rt = Runtime.from_settings(settings)
        services_cpu = CpuMeter({"redis": services.redis.process.pid, "moto": services.moto.process.pid})  # type: ignore[union-attr]
        _checkpoint(services.postgres.url)
        worker_cpu = cpu_seconds(worker.pid)
        services_cpu.start()
        try:
            start = time.monotonic()
            intake = subprocess.Popen([DMP, "ingest", str(feed), "--source", "insurer:BENCH", "--json"], env=env,
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            intake_rss = _PeakRss(intake.pid)
            intake_rss.start()
            reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
            out, _ = intake.communicate()
            # The only child reaped meanwhile (the workers run on): the intake's whole CPU, its own children's too.
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            intake_cpu = after.ru_utime + after.ru_stime - reaped.ru_utime - reaped.ru_stime
            intake_rss.running = False
            feed_id = json.loads(out.strip().splitlines()[-1])["batch"]
            _wait_done(rt, feed_id)
            elapsed = time.monotonic() - start
            worker_cpu = cpu_seconds(worker.pid) - worker_cpu
            services_spent = services_cpu.stop()
            with rt.sessions() as session:
                stored = session.scalar(select(func.count()).select_from(CareEvent)) or 0
        finally:
            worker_rss.running = False
            worker.terminate()
            worker.wait(timeout=30)
            rt.close()
    return _Round(floor_s, floor_stored, floor_cpu, elapsed, stored, intake_cpu, worker_cpu, worker_idle, services_spent,
                  intake_rss.own, worker_rss.child)  # fmt: skip


def run(lines: int, workers: int, threads: int, patients: int, rounds: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-feed-") as tmp:
        root = Path(tmp)
        feed = root / "feed.csv"
        write_feed(feed, lines, patients=patients, seed=7, today=paris_date())
        done = [_round(root / f"round{n}", feed, workers, threads) for n in range(rounds)]
    # Each part keeps its best round (the floor too: it is never weakened), its own figures with it.
    best_floor = min(done, key=lambda r: r.floor_s)
    best = min(done, key=lambda r: r.elapsed)
    floor_s, floor_stored, floor_cpu = best_floor.floor_s, best_floor.floor_stored, best_floor.floor_cpu
    elapsed, stored, intake_cpu, worker_cpu, worker_idle = best.elapsed, best.stored, best.intake_cpu, best.worker_cpu, best.worker_idle
    services_spent = best.services
    value, floor = lines / elapsed, lines / floor_s
    per_k = 1000 / lines  # CPU seconds per 1,000 lines, as ms per line

    def ms(seconds: float) -> str:
        return f"{seconds * per_k * 1000:.3f}"

    times = f" (pipeline {', '.join(f'{r.elapsed:.2f}' for r in done)} s; floor {', '.join(f'{r.floor_s:.2f}' for r in done)} s)"
    print_parts("feed", {
        "pipeline (dmp ingest + workers)": f"{value:.0f} lines/s ({lines} lines in {elapsed:.2f} s, {stored} stored)",
        "floor (own parse + COPY)": f"{floor:.0f} lines/s ({floor_s:.2f} s, {floor_stored} stored, {workers} processes)",
        "our CPU, µs per line": f"intake {ms(intake_cpu)}, workers {ms(worker_cpu)}; floor {ms(floor_cpu)}",
        "workers idle": f"{worker_idle * 1000:.1f} ms of CPU per second doing nothing ({ms(worker_idle * elapsed)} µs per line here)",
        "services' CPU, µs per line": f"redis {ms(services_spent['redis'])}, moto {ms(services_spent['moto'])} (PostgreSQL: shared server)",
        "ratio": f"{value / floor:.3f}",
        "peak RSS": f"intake {best.intake_rss / 2**20:.1f} MiB, a worker {best.worker_rss / 2**20:.1f} MiB",
        "rounds": f"{rounds}, floor then pipeline in each, the best time of each part kept{times if rounds > 1 else ''}",
    })  # fmt: skip
    return {
        "bench": "feed",
        "metric": "lines_per_second",
        "value": round(value),
        "unit": "lines/s",
        "floor": round(floor),
        "ratio": round(value / floor, 3),
        "lines": lines,
        "stored": stored,
        "workers": workers,
        "threads": threads,
        "seconds": round(elapsed, 2),
        "floor_seconds": round(floor_s, 2),
        "floor_stored": floor_stored,
        "floor_processes": workers,
        "intake_cpu_ms_per_line": round(intake_cpu / lines * 1000, 4),
        "worker_cpu_ms_per_line": round(worker_cpu / lines * 1000, 4),
        "worker_idle_cpu_ms_per_s": round(worker_idle * 1000, 1),
        "floor_cpu_ms_per_line": round(floor_cpu / lines * 1000, 4),
        "redis_cpu_ms_per_line": round(services_spent["redis"] / lines * 1000, 4),
        "moto_cpu_ms_per_line": round(services_spent["moto"] / lines * 1000, 4),
        "intake_peak_rss_mb": round(best.intake_rss / 2**20, 1),
        "worker_peak_rss_mb": round(best.worker_rss / 2**20, 1),
        "rounds": rounds,
    }
