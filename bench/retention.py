"""Retention benchmark on PostgreSQL: prune the care history of `rows` events while it is read.

Half the events are older than the 24-month window. A reader in a process of its own reads random
patients' care history all along (one read at a time, through the pipeline's `care_history`), first
while nothing else runs, then while this process prunes. value: the reader's p99 latency during the
prune; floor: the same reader's p99 over the idle seconds before it. ratio = value / floor (target
≤ 3). Also reported: the worst reads, medians, and the prune's time and rate.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from bench.report import print_parts
from infra.services import throwaway_database
from pipeline.carehistory.chunkstore import COLUMNS
from pipeline.carehistory.history import care_history
from pipeline.core.clock import paris_date
from pipeline.core.keys import load_key_file
from pipeline.core.settings import Settings
from pipeline.index.states import RecordStatus
from pipeline.retention import prune_care_events
from pipeline.runtime import Runtime

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

PATIENTS = 50_000
IDLE_SECONDS = 5.0
WARMUP_READS = 50


def _fill(url: str, rows: int, today: dt.date) -> list[str]:
    rng = random.Random(5)
    patients = [str(uuid.uuid4()) for _ in range(PATIENTS)]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection, connection.cursor() as cursor:
        with cursor.copy("COPY patients (id, ins, status, created_at) FROM STDIN") as copy:
            for number, pid in enumerate(patients):
                copy.write_row((pid, f"P{number:014d}", RecordStatus.OPEN, dt.datetime.now(dt.UTC)))
        with cursor.copy(f"COPY care_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for number in range(rows):
                # Half inside the window, half up to 5 years before it.
                days = rng.randint(0, 700) if number % 2 else rng.randint(760, 2500)
                care = today - dt.timedelta(days=days)
                # No sealed details: these patients have no record key, so reads skip opening them (a page of
                # 50 lines opens in well under a millisecond; the prune's effect on reads is what is measured).
                copy.write_row(("insurer:BENCH", f"R{number:010d}", patients[rng.randrange(PATIENTS)], care, None,
                                "26.50", "18.55", care, None, "0" * 64, "bench"))  # fmt: skip
        connection.commit()
        cursor.execute("ANALYZE care_events")
    return patients


@dataclass(frozen=True)
class _ReaderJob:
    home: Path
    database_url: str
    key_file: Path
    patients: list[str]
    today: dt.date


def _reader(job: _ReaderJob, ready: Event, stop: Event, results: Queue[Any]) -> None:
    """Read random patients' care history until `stop`; report (start, seconds) per read."""
    rt = Runtime.from_settings(Settings(home=job.home, database_url=job.database_url, key_file=job.key_file))
    rng = random.Random(9)

    def read() -> None:
        with rt.sessions() as session:
            care_history(session, rng.choice(job.patients), as_of=job.today, record_keys=rt.record_keys)

    for _ in range(WARMUP_READS):
        read()
    ready.set()
    samples: list[tuple[float, float]] = []
    while not stop.is_set():
        start = time.monotonic()  # one clock for every process of the machine
        read()
        samples.append((start, time.monotonic() - start))
    rt.close()
    results.put(samples)


def _between(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [seconds for began, seconds in samples if start <= began < end]


def run(rows: int) -> dict[str, Any]:
    today = paris_date()
    with tempfile.TemporaryDirectory(prefix="dmp-bench-retention-") as tmp, throwaway_database() as database:
        settings = Settings(home=Path(tmp), database_url=database.url, key_file=Path(tmp) / "keys.json")
        load_key_file(settings.resolved_key_file(), create=True)
        patients = _fill(database.url, rows, today)
        context = multiprocessing.get_context("spawn")
        ready, stop, results = context.Event(), context.Event(), context.Queue()
        job = _ReaderJob(settings.home, database.url, settings.resolved_key_file(), patients, today)
        reader = context.Process(target=_reader, args=(job, ready, stop, results), daemon=True)
        reader.start()
        rt = Runtime.from_settings(settings)
        try:
            if not ready.wait(120):
                raise TimeoutError("the reader did not start")
            idle_start = time.monotonic()
            time.sleep(IDLE_SECONDS)
            idle_end = prune_start = time.monotonic()
            deleted = prune_care_events(rt, today)
            prune_end = time.monotonic()
        finally:
            stop.set()
            rt.close()
        samples = results.get(timeout=120)
        reader.join(60)
    idle, during = _between(samples, idle_start, idle_end), _between(samples, prune_start, prune_end)
    prune_s = prune_end - prune_start

    def p99(values: list[float]) -> float:
        return sorted(values)[int(0.99 * (len(values) - 1))] * 1000

    print_parts("retention", {
        "reader (own process)": f"p99 {p99(during):.2f} ms during the prune ({len(during)} reads), {p99(idle):.2f} idle ({len(idle)})",
        "medians": f"{statistics.median(during) * 1000:.2f} ms during, {statistics.median(idle) * 1000:.2f} ms idle",
        "worst": f"{max(during) * 1000:.1f} ms during, {max(idle) * 1000:.1f} ms idle",
        "prune": f"{deleted} rows in {prune_s:.1f} s ({deleted / prune_s:.0f} rows/s)",
        "ratio": f"{p99(during) / p99(idle):.2f} (target <= 3)",
    })  # fmt: skip
    return {
        "bench": "retention",
        "metric": "p99_read_latency_during_prune",
        "value": round(p99(during), 2),
        "unit": "ms",
        "floor": round(p99(idle), 2),
        "ratio": round(p99(during) / p99(idle), 2),
        "rows": rows,
        "deleted": deleted,
        "prune_seconds": round(prune_s, 1),
        "deleted_per_second": round(deleted / prune_s),
        "reads_during_prune": len(during),
        "reads_idle": len(idle),
        "max_read_ms_during": round(max(during) * 1000, 1),
        "max_read_ms_idle": round(max(idle) * 1000, 1),
        "median_read_ms_during": round(statistics.median(during) * 1000, 2),
        "median_read_ms_idle": round(statistics.median(idle) * 1000, 2),
    }
