"""Retention benchmark on PostgreSQL: prune the care history of `rows` events while it is read.

Half the events are older than the 24-month window. A reader thread reads random patients' care
history all along; reported: time to prune, rows deleted, and the worst and p99 read latency
during the prune, against the floor of the same reads with no prune running.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

from infra.services import throwaway_database
from pipeline.carehistory.feeds import COLUMNS
from pipeline.carehistory.history import care_history
from pipeline.core.clock import paris_date
from pipeline.core.keys import load_key_file
from pipeline.core.settings import Settings
from pipeline.retention import prune_care_events
from pipeline.runtime import Runtime

PATIENTS = 50_000


def _fill(url: str, rows: int, today: dt.date) -> list[str]:
    rng = random.Random(5)
    patients = [str(uuid.uuid4()) for _ in range(PATIENTS)]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection, connection.cursor() as cursor:
        with cursor.copy("COPY patients (id, ins, status, created_at) FROM STDIN") as copy:
            for number, pid in enumerate(patients):
                copy.write_row((pid, f"P{number:014d}", "open", dt.datetime.now(dt.UTC)))
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


def _reads(rt: Runtime, patients: list[str], today: dt.date, stop: threading.Event, out: list[float]) -> None:
    rng = random.Random(9)
    while not stop.is_set():
        start = time.perf_counter()
        with rt.sessions() as session:
            care_history(session, rng.choice(patients), as_of=today, record_keys=rt.record_keys)
        out.append(time.perf_counter() - start)


def _measure_reads(rt: Runtime, patients: list[str], today: dt.date, seconds: float) -> list[float]:
    stop, latencies = threading.Event(), []
    thread = threading.Thread(target=_reads, args=(rt, patients, today, stop, latencies))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return latencies


def run(rows: int) -> dict:
    today = paris_date()
    with tempfile.TemporaryDirectory(prefix="dmp-bench-retention-") as tmp, throwaway_database() as database:
        settings = Settings(home=Path(tmp), database_url=database.url, key_file=Path(tmp) / "keys.json")
        load_key_file(settings.resolved_key_file(), create=True)
        patients = _fill(database.url, rows, today)
        rt = Runtime.from_settings(settings)
        idle = _measure_reads(rt, patients, today, 5.0)
        stop, during = threading.Event(), []
        reader = threading.Thread(target=_reads, args=(rt, patients, today, stop, during))
        reader.start()
        start = time.perf_counter()
        deleted = prune_care_events(rt, today)
        prune_s = time.perf_counter() - start
        stop.set()
        reader.join()
        rt.close()

    def p99(values: list[float]) -> float:
        return sorted(values)[int(0.99 * (len(values) - 1))] * 1000

    return {
        "bench": "retention",
        "metric": "worst_read_latency_during_prune",
        "value": round(max(during) * 1000, 1),
        "unit": "ms",
        "floor": round(max(idle) * 1000, 1),
        "ratio": round(max(during) / max(idle), 2),
        "rows": rows,
        "deleted": deleted,
        "prune_seconds": round(prune_s, 1),
        "deleted_per_second": round(deleted / prune_s),
        "reads_during_prune": len(during),
        "p99_read_ms_during": round(p99(during), 2),
        "p99_read_ms_idle": round(p99(idle), 2),
        "median_read_ms_during": round(statistics.median(during) * 1000, 2),
    }
