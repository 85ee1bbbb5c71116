"""Feed benchmark on PostgreSQL: lines per second from file to committed rows, and peak RSS.

pipeline: `dmp ingest FEED --source insurer:…` plus `dmp worker --processes W` on throwaway
Redis, moto_server and a fresh PostgreSQL database; from the start of the intake to the last
chunk committed. floor: a bare `COPY` of the same rows, already parsed, into the same table.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psutil
from sqlalchemy import func, select

from infra.services import dmp_environment, throwaway_database, throwaway_services
from pipeline.carehistory.feeds import COLUMNS
from pipeline.core.clock import paris_date
from pipeline.core.sealedfields import DETAILS
from pipeline.index.models import CareEvent
from pipeline.runtime import Runtime
from pipeline.samples.feed import write_feed
from pipeline.status import pending_chunks

DMP = str(Path(sys.executable).with_name("dmp"))


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


def _floor(database_url: str, feed: Path) -> float:
    """Parse every line first (untimed), then time one COPY of all rows."""
    import csv

    import psycopg

    today = paris_date()
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        patient_ids: dict[str, str] = {}
        rows = []
        with feed.open(newline="", encoding="utf-8") as handle:
            for raw in csv.DictReader(handle):
                pid = patient_ids.setdefault(raw["patient_ins"], str(uuid.uuid4()))
                details = json.dumps([raw[name] for name in DETAILS], ensure_ascii=False).encode()  # the same bytes, unsealed
                rows.append((
                    "insurer:FLOOR", raw["line_id"], pid, dt.date.fromisoformat(raw["care_date"]), details,
                    Decimal(raw["amount_billed"]), Decimal(raw["amount_reimbursed"]), dt.date.fromisoformat(raw["reimbursement_date"]),
                    None, "0" * 64, "floor",
                ))  # fmt: skip
        assert all(dt.date.fromisoformat(str(r[3])) <= today for r in rows[:10])
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO patients (id, ins, status, created_at) VALUES (%s, %s, 'open', now())",
                               [(pid, ins) for ins, pid in patient_ids.items()])  # fmt: skip
        connection.commit()
        start = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy(f"COPY care_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return time.perf_counter() - start


def _wait_done(rt: Runtime, feed_id: str, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            pending = pending_chunks(session, feed_id)
        if pending == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(feed_id)


def run(lines: int, workers: int, threads: int, patients: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-feed-") as tmp:
        root = Path(tmp)
        with throwaway_services(root) as services, throwaway_database() as floor_db:
            settings = services.settings
            feed = root / "feed.csv"
            write_feed(feed, lines, patients=patients, seed=7, today=paris_date())
            floor_s = _floor(floor_db.url, feed)

            env = dmp_environment(settings)
            worker = subprocess.Popen([DMP, "worker", "--processes", str(workers), "--threads", str(threads)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            worker_rss = _PeakRss(worker.pid)
            worker_rss.start()
            time.sleep(3)  # let the workers boot before the clock starts
            rt = Runtime.from_settings(settings)
            try:
                start = time.monotonic()
                intake = subprocess.Popen([DMP, "ingest", str(feed), "--source", "insurer:BENCH", "--json"], env=env,
                                          stdout=subprocess.PIPE, text=True)  # fmt: skip
                intake_rss = _PeakRss(intake.pid)
                intake_rss.start()
                out, _ = intake.communicate()
                intake_rss.running = False
                feed_id = json.loads(out.strip().splitlines()[-1])["batch"]
                _wait_done(rt, feed_id)
                elapsed = time.monotonic() - start
                with rt.sessions() as session:
                    stored = session.scalar(select(func.count()).select_from(CareEvent))
            finally:
                worker_rss.running = False
                worker.terminate()
                worker.wait(timeout=30)
                rt.close()
    value, floor = lines / elapsed, lines / floor_s
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
        "intake_peak_rss_mb": round(intake_rss.own / 2**20, 1),
        "worker_peak_rss_mb": round(worker_rss.child / 2**20, 1),
    }
