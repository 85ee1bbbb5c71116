"""Upload benchmark: batch uploads through the HTTP API into the inbox, on throwaway Redis, PostgreSQL
and moto_server (S3).

value: MB/s of zip batches (`POST /v1/ingest/batches`, `application/zip`) from `clients` concurrent
clients through `dmp api` (a real uvicorn process) until every answer is in (each batch streamed to
the store, read back by ranged GETs, each document copied to its item's inbox object, rows
recorded, messages sent to Redis; no worker runs), also as documents per second, with the peak RSS
of the API process. floor: the same zip bytes written straight to the object store (boto3 PUT of
each zip) from as many threads. ratio = value / floor (target ≥ 0.6; RSS flat, not growing with the
bytes uploaded).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import psutil

from infra.services import dmp_environment, free_port, throwaway_services
from pipeline.ingest.manifest import MANIFEST_NAME
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from pipeline.sources import add_source

DMP = str(Path(sys.executable).with_name("dmp"))


class _RssWatch(threading.Thread):
    """Peak RSS of a process and its children (the API and any uvicorn workers)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.running = psutil.Process(pid), 0, True

    def current(self) -> int:
        processes = [self.root, *self.root.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes if p.is_running())

    def run(self) -> None:
        while self.running:
            with contextlib.suppress(psutil.Error):  # a worker process ending between listing and reading
                self.peak = max(self.peak, self.current())
            time.sleep(0.05)


def _batches(root: Path, documents: int, clients: int, patients: int, pad_kib: int) -> list[tuple[bytes, int]]:
    """`clients` zips, each a batch of its own (its share of the manifest rows): (zip bytes, documents).

    Each document is followed by `pad_kib` KiB of random bytes standing for what makes real ones
    heavy (embedded images and fonts, already-compressed streams): the samples are 2 KiB text-only
    PDFs and CDAs, where hospital PDFs run from 50 KiB to a few MiB. Padded documents no longer
    validate, which does not matter here: no worker runs."""
    padding = random.Random(2027).randbytes(pad_kib * 1024)
    sample = root / "sample"
    generate_samples(sample, patients=patients, documents=documents, seed=2027, bad=False)
    with (sample / MANIFEST_NAME).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames or [], list(reader)
    zips = []
    for share in range(clients):
        mine = rows[share::clients]
        manifest = io.StringIO()
        writer = csv.DictWriter(manifest, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(mine)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_NAME, manifest.getvalue())
            for row in mine:
                archive.writestr(row["file"], (sample / row["file"]).read_bytes() + padding)
        zips.append((out.getvalue(), len(mine)))
    return zips


def _floor(rt: Runtime, zips: list[tuple[bytes, int]]) -> float:
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(zips)) as pool:
        list(pool.map(lambda n: rt.store.put(f"inbox/floor/{n}.zip", io.BytesIO(zips[n][0])), range(len(zips))))
    return time.monotonic() - start


def _api(settings, root: Path, server_workers: int) -> tuple[subprocess.Popen, str]:  # type: ignore[no-untyped-def]
    port = free_port()
    env = dmp_environment(settings)
    command = [DMP, "api", "--port", str(port), "--workers", str(server_workers), "--no-access-log"]
    log = (root / "api.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError("dmp api did not start")


def _upload(base: str, key: str, data: bytes) -> None:
    chunks = (data[at : at + 256 * 1024] for at in range(0, len(data), 256 * 1024))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/zip", "Content-Length": str(len(data))}
    answer = httpx.post(base + "/v1/ingest/batches", content=chunks, headers=headers, timeout=600)
    if answer.status_code != 202:
        raise RuntimeError(f"upload refused: {answer.status_code} {answer.text[:200]}")


def run(documents: int, clients: int, patients: int, server_workers: int, pad_kib: int = 0) -> dict:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-upload-") as tmp, throwaway_services(Path(tmp), ingest_max_queued=10**9) as services:
        root, settings = Path(tmp), services.settings
        server = None
        try:
            zips = _batches(root, documents, clients, patients, pad_kib)
            total_bytes = sum(len(data) for data, _ in zips)
            rt = Runtime.from_settings(settings)
            rt.store.ensure_ready()
            with rt.sessions() as session:
                key = add_source(session, rt.hmac_secret, "hospital:BENCH-UPLOAD")
            floor_seconds = _floor(rt, zips)
            server, base = _api(settings, root, server_workers)
            watch = _RssWatch(server.pid)
            time.sleep(1)
            baseline = watch.current()
            watch.start()
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda z: _upload(base, key, z[0]), zips))
            seconds = time.monotonic() - start
            watch.running = False
            rt.close()
        finally:
            if server is not None and server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
    mb = total_bytes / 1e6
    value, floor = mb / seconds, mb / floor_seconds
    return {
        "bench": "upload",
        "metric": "megabytes_per_second",
        "value": round(value, 2),
        "unit": "MB/s",
        "floor": round(floor, 2),
        "ratio": round(value / floor, 3),
        "documents_per_second": round(sum(n for _, n in zips) / seconds, 1),
        "documents": sum(n for _, n in zips),
        "megabytes": round(mb, 2),
        "pad_kib": pad_kib,
        "clients": clients,
        "server_workers": server_workers,
        "api_rss_baseline_mb": round(baseline / 2**20, 1),
        "api_peak_rss_mb": round(watch.peak / 2**20, 1),
        "upload_seconds": round(seconds, 2),
        "floor_seconds": round(floor_seconds, 3),
    }
