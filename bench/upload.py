"""Upload benchmark: batch uploads through the HTTP API into the inbox, on throwaway Redis, PostgreSQL
and moto_server (S3).

value: zip batches (`POST /v1/ingest/batches`, `application/zip`) from `clients` concurrent clients
through `dmp api` (a real uvicorn process) until every answer is in (each batch streamed to the
store, its directory checked, its items recorded, messages sent to Redis; no worker runs), in MB/s,
or in documents/s when the documents are small (under 16 KiB on average: the samples unpadded),
where the bytes are few and the per-document work is what is measured. Also the peak RSS of the
API process.

floor: the same work with the least machinery, from as many threads in one process: per zip, one
PUT of its bytes to the object store, its manifest read from the zip in memory, each row's title
sealed under a batch key, the batch's item rows written with one COPY (into a copy of the
batch_items table, indexes included, no foreign keys) and committed, and one message to Redis.
ratio = value / floor in the same unit (target ≥ 0.6; RSS flat, not growing with the bytes
uploaded).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.services import dmp_environment, free_port, throwaway_services
from pipeline.index.states import ItemState
from pipeline.ingest.manifest import MANIFEST_NAME
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from pipeline.sources import add_source

if TYPE_CHECKING:
    import psycopg
    import redis

    from pipeline.core.settings import Settings

DMP = str(Path(sys.executable).with_name("dmp"))
QUEUED = ItemState.QUEUED.value
SMALL_DOCUMENT_BYTES = 16 * 1024  # below this on average, documents/s is the metric: MB/s would measure almost nothing


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


ITEM_COLUMNS = ("id", "batch_id", "slot", "file", "row_number", "state", "document_id", "attempts", "crashes", "source_document_id",
                "patient_ins", "title_sealed", "document_type", "service_date", "author_id", "author_profession", "inbox_key")  # fmt: skip


def _floor_batch(rt: Runtime, connection: psycopg.Connection[Any], broker: redis.Redis, data: bytes, number: int) -> None:
    key = f"inbox/floor/{number}.zip"
    rt.store.put(key, io.BytesIO(data))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read(MANIFEST_NAME).decode("utf-8"))))
    batch_id, batch_key = str(uuid.uuid4()), AESGCM(AESGCM.generate_key(256))
    with connection.cursor() as cursor, cursor.copy(f"COPY floor_batch_items ({', '.join(ITEM_COLUMNS)}) FROM STDIN") as copy:
        for number_in_batch, row in enumerate(rows, start=1):
            item_id, nonce = str(uuid.uuid4()), secrets.token_bytes(12)
            title = nonce + batch_key.encrypt(nonce, row["title"].encode(), f"title:{item_id}".encode())
            copy.write_row((item_id, batch_id, f"row:{number_in_batch}", row["file"], number_in_batch, QUEUED, str(uuid.uuid4()), 0, 0,
                            row["source_document_id"], row["patient_ins"], title, row["document_type"] or None, row["service_date"],
                            row["author_id"], row["author_profession"], key))  # fmt: skip
    connection.commit()
    broker.lpush("floor:batches", json.dumps({"batch": batch_id, "items": len(rows)}))


def _floor(rt: Runtime, database_url: str, redis_url: str, zips: list[tuple[bytes, int]]) -> float:
    import psycopg
    import redis

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE TABLE floor_batch_items (LIKE batch_items INCLUDING DEFAULTS INCLUDING INDEXES)")
    connections = [psycopg.connect(url) for _ in zips]  # outside the clock, as the API's pool is
    broker = redis.Redis.from_url(redis_url)
    broker.ping()
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(zips)) as pool:
        list(pool.map(lambda n: _floor_batch(rt, connections[n], broker, zips[n][0], n), range(len(zips))))
    seconds = time.monotonic() - start
    for connection in connections:
        connection.close()
    return seconds


def _api(settings: Settings, root: Path, server_workers: int) -> tuple[subprocess.Popen[bytes], str]:
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


def run(documents: int, clients: int, patients: int, server_workers: int, pad_kib: int = 0) -> dict[str, Any]:
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
            floor_seconds = _floor(rt, services.postgres.url, services.redis.url, zips)
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
    count = sum(n for _, n in zips)
    small = total_bytes / count < SMALL_DOCUMENT_BYTES
    value, floor = (count / seconds, count / floor_seconds) if small else (mb / seconds, mb / floor_seconds)
    return {
        "bench": "upload",
        "metric": "documents_per_second" if small else "megabytes_per_second",
        "value": round(value, 1 if small else 2),
        "unit": "docs/s" if small else "MB/s",
        "floor": round(floor, 1 if small else 2),
        "ratio": round(value / floor, 3),
        "megabytes_per_second": round(mb / seconds, 2),
        "documents_per_second": round(count / seconds, 1),
        "floor_megabytes_per_second": round(mb / floor_seconds, 2),
        "floor_documents_per_second": round(count / floor_seconds, 1),
        "documents": count,
        "megabytes": round(mb, 2),
        "mean_document_bytes": round(total_bytes / count),
        "pad_kib": pad_kib,
        "clients": clients,
        "server_workers": server_workers,
        "api_rss_baseline_mb": round(baseline / 2**20, 1),
        "api_peak_rss_mb": round(watch.peak / 2**20, 1),
        "upload_seconds": round(seconds, 2),
        "floor_seconds": round(floor_seconds, 3),
    }
