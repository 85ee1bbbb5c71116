"""Ingestion benchmark, distributed mode on throwaway Redis, PostgreSQL and moto_server (S3).

pipeline: `dmp ingest` + `dmp worker --processes W` as real processes; documents per second from
the drop (start of the intake) to the last item final. floor: the same intake and stage functions
called in a plain loop in one process, against the same services, without a broker.
ratio = pipeline / floor.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from sqlalchemy import select

from infra.services import dmp_environment, throwaway_services
from pipeline.core.settings import Settings
from pipeline.documents.process import process_item
from pipeline.index.models import BatchItem
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from pipeline.status import counts

DMP = str(Path(sys.executable).with_name("dmp"))


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


def _latencies_ms(rt: Runtime, batch_id: str) -> list[float]:
    with rt.sessions() as session:
        rows = session.execute(
            select(BatchItem.started_at, BatchItem.finished_at).where(BatchItem.batch_id == batch_id, BatchItem.started_at.is_not(None))
        ).all()
    return sorted((finished - started).total_seconds() * 1000 for started, finished in rows if finished)


def _wait_final(rt: Runtime, batch_id: str, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            now = counts(session, batch_id)
        if now.done == now.total:
            return
        time.sleep(0.1)
    raise TimeoutError(f"batch {batch_id} unfinished after {timeout}s")


def _pipeline(settings: Settings, rt: Runtime, batch: Path, workers: int, threads: int) -> dict:
    env = dmp_environment(settings)
    worker = subprocess.Popen(
        [DMP, "worker", "--processes", str(workers), "--threads", str(threads)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    watch = _RssWatch(worker.pid)
    watch.start()
    time.sleep(3)  # let the workers boot before the clock starts
    try:
        start = time.monotonic()
        out = subprocess.run(
            [DMP, "ingest", str(batch), "--source", "hospital:BENCH-PIPE", "--json"], env=env, capture_output=True, text=True, check=True
        )
        batch_id = json.loads(out.stdout.strip().splitlines()[-1])["batch"]
        _wait_final(rt, batch_id)
        elapsed = time.monotonic() - start
    finally:
        watch.running = False
        worker.terminate()
        worker.wait(timeout=30)
    latencies = _latencies_ms(rt, batch_id)
    return {"seconds": elapsed, "batch": batch_id, "latencies": latencies, "peak_rss": watch.peak}


def _floor(rt: Runtime, batch: Path) -> dict:
    start = time.monotonic()
    result = receive_batch(rt, batch, "hospital:BENCH-FLOOR", lambda item_id: process_item(rt, item_id))
    return {"seconds": time.monotonic() - start, "batch": result.batch_id}


def run(documents: int, workers: int, threads: int, patients: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-") as tmp:
        root = Path(tmp)
        with throwaway_services(root, quarantine_days=7) as services:
            settings = services.settings
            batch = root / "batch"
            generate_samples(batch, patients=patients, documents=documents, seed=2026)
            rt = Runtime.from_settings(settings)
            rt.store.ensure_ready()
            floor = _floor(rt, batch)
            pipe = _pipeline(settings, rt, batch, workers, threads)
            with rt.sessions() as session:
                total = counts(session, pipe["batch"]).total
            rt.close()
    lat = pipe["latencies"]
    value = total / pipe["seconds"]
    floor_rate = total / floor["seconds"]
    return {
        "bench": "ingest",
        "metric": "documents_per_second",
        "value": round(value, 2),
        "unit": "docs/s",
        "floor": round(floor_rate, 2),
        "ratio": round(value / floor_rate, 3),
        "documents": total,
        "workers": workers,
        "threads": threads,
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
        "worker_peak_rss_mb": round(pipe["peak_rss"] / 2**20, 1),
        "pipeline_seconds": round(pipe["seconds"], 2),
        "floor_seconds": round(floor["seconds"], 2),
    }
