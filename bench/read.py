"""Read benchmark on PostgreSQL + an S3 endpoint (moto_server, or DMP_TEST_S3_ENDPOINT).

value: p99 latency of `GET /v1/patients/{p}/documents/{d}/content` through the real HTTP API
(`dmp api --workers 2` subprocess: token check, policy, index, storage GET, decryption and integrity
check, audit append), sent with the standard library's client (`_plain`: httpx's asyncio client spends
1.1-1.4 ms of CPU per request on the same cores, the client's time, not the route's). floor: p99 of the same
work with the least machinery, in this process (bench/readfloor.py: the product's judging statement and audit
insert through psycopg, the store's GET, decryption and the keyed-hash check; no HTTP, framework, ORM or pool).
Both at the floor's concurrency: the highest of 1, 2, 4… up to `concurrency` at which the store's GET's median
stays within FLOOR_QUEUEING of its median alone (past it the p99 measures a queue). ratio = value / floor
(target ≤ 2). Beside it: the GET alone (the store's, and boto3's `get_object`), stricter than the same work.
The content read and the GET alone are also run at `concurrency` in flight (throughput). Parts: the API processes' CPU per content read and
per list (psutil, PostgreSQL and moto_server apart), the floor's own CPU per read. Also: the p99 of the
document LIST of a patient holding 1,000 documents in an index of `documents` rows (target ≤ 10 ms),
sequential and at `concurrency`; the sequential list through httpx is reported beside it (`list_httpx_p50_ms`,
`list_httpx_p99_ms`).

A few hundred real small documents are sealed through the pipeline's stage functions; the index
is then filled up to `documents` rows with COPY: rows pointing at object keys that do not exist
(never read; they only make the index big), 1,000 documents (real + filler) on one patient.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import http.client
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from bench.measure import cpu_seconds
from bench.readfloor import ContentFloor, FloorRead, floor_read
from bench.report import print_parts
from infra.services import dmp_environment, free_port, throwaway_services, wait_for_port
from pipeline.core.clock import paris_date
from pipeline.core.settings import Settings
from pipeline.core.storage import ObjectStore
from pipeline.documents.process import process_item
from pipeline.documents.titles import document_titles, seal_title
from pipeline.index.models import Document
from pipeline.index.states import ItemState, RecordStatus
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    # httpx2 is a drop-in fork of httpx: the same API under the other name.
    import httpx  # type: ignore[no-redef]

DMP = str(Path(sys.executable).with_name("dmp"))
REPO = Path(__file__).resolve().parent.parent
REAL_DOCUMENTS = 300
REAL_PATIENTS = 30
LIST_PATIENT_DOCUMENTS = 1000
FILLER_PER_PATIENT = 50
WARMUP = 200
LIST_REQUESTS = 300
PROBE_REQUESTS = 300
T = TypeVar("T")
FLOOR_QUEUEING = 1.5  # a median this many times one request's alone: requests queue, the floor is saturated


def _pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def _summary(latencies_s: list[float], wall_s: float) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies_s)
    return {"p50": round(_pct(ms, 0.50), 2), "p99": round(_pct(ms, 0.99), 2), "max": round(ms[-1], 2), "rps": round(len(ms) / wall_s, 1)}


# ---------------------------------------------------------------------------------------------
# Setup: real sealed documents, then filler rows


def _seal_real(rt: Runtime, root: Path, count: int, patients: int) -> None:
    batch = root / "batch"
    generate_samples(batch, patients=patients, documents=count, seed=4242, bad=False)
    sent: list[str] = []
    receive_batch(rt, batch, "hospital:BENCH-READ", sent.append)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item_id: process_item(rt, item_id), sent))


def _fill(rt: Runtime, database_url: str, documents: list[Document], total: int, list_patient: str) -> int:
    """COPY filler patients, batch items and documents until the index holds `total` documents.

    The list patient's filler documents get real sealed titles (the list route opens them all)."""
    import psycopg

    missing = total - len(documents)
    if missing <= 0:
        return 0
    on_list_patient = sum(d.patient_id == list_patient for d in documents)
    template = documents[0]
    title = document_titles(rt, [template])[template.id] or "Compte rendu"
    list_key = rt.record_keys.get(next(d.record_key_id for d in documents if d.patient_id == list_patient)).key
    record_key_of = {d.patient_id: d.record_key_id for d in documents}
    batch_id = str(uuid.uuid4())
    patients: list[tuple[str, str]] = []
    rows: list[tuple[object, ...]] = []
    items: list[tuple[object, ...]] = []
    owner = list_patient
    owner_left = max(0, LIST_PATIENT_DOCUMENTS - on_list_patient)
    start = dt.date(2015, 1, 1)
    for n in range(missing):
        if owner_left == 0:
            owner = str(uuid.uuid4())
            patients.append((owner, f"9{len(patients):014d}"))
            owner_left = FILLER_PER_PATIENT
            record_key_of[owner] = template.record_key_id  # FK only: these rows are never decrypted
        owner_left -= 1
        doc_id, item_id = str(uuid.uuid4()), str(uuid.uuid4())
        items.append((item_id, batch_id, f"row:{n + 1}", f"fill-{n}.pdf", ItemState.INDEXED, 1, 0, doc_id))
        rows.append((
            doc_id, owner, "hospital:BENCH-FILL", f"FILL-{n}", item_id,
            seal_title(list_key, title, doc_id, owner) if owner == list_patient else None, template.class_code, template.type_code,
            template.classified_by, 1.0, False, start + dt.timedelta(days=n % 4000), template.author_id, template.author_profession,
            template.mime_type, template.size, secrets.token_hex(32), f"fill/{doc_id}", record_key_of[owner], secrets.token_bytes(60),
        ))  # fmt: skip
    doc_cols = ("id, patient_id, source, source_document_id, batch_item_id, title_sealed, class_code, type_code, classified_by, "
                "confidence, needs_review, service_date, author_id, author_profession, mime_type, size, content_hmac, object_key, "
                "record_key_id, wrapped_key")  # fmt: skip
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO batches (id, source, manifest_digest, total) VALUES (%s, 'hospital:BENCH-FILL', %s, %s)",
                       (batch_id, secrets.token_hex(32), missing))  # fmt: skip
        with cursor.copy("COPY patients (id, ins, status) FROM STDIN") as copy:
            for pid, ins in patients:
                copy.write_row((pid, ins, RecordStatus.OPEN))
        with cursor.copy("COPY batch_items (id, batch_id, slot, file, state, attempts, crashes, document_id) FROM STDIN") as copy:
            for item in items:
                copy.write_row(item)
        with cursor.copy(f"COPY documents ({doc_cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        connection.autocommit = True
        cursor.execute("ANALYZE")
    return missing


# ---------------------------------------------------------------------------------------------
# Measurements


async def _drive(base: str, requests: Sequence[tuple[str, Mapping[str, str], int | None]], concurrency: int) -> tuple[list[float], float]:
    """Send every (path, headers, expected length) with `concurrency` in flight; latencies (s) and wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(requests)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for path, headers, length in queue:
                begin = time.perf_counter()
                response = await client.get(path, headers=headers)
                latencies.append(time.perf_counter() - begin)
                if response.status_code != 200 or (length is not None and len(response.content) != length):
                    errors.append(f"{response.status_code} {path}")

        wall = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[:3]}")
    return latencies, wall


def _plain(base: str, requests: Sequence[tuple[str, Mapping[str, str], int | None]], concurrency: int) -> tuple[list[float], float]:
    """Send every (path, headers, expected length) with `concurrency` in flight, each from a thread of its own on one
    kept-alive connection of the standard library's client: the route's latency with the least client machinery on
    the measured path (httpx's asyncio client spends 1.1-1.4 ms of this machine's CPU per request, a quarter of the
    API's, on the same cores); latencies (s) and wall time."""
    address = urllib.parse.urlsplit(base)
    queue = iter(requests)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def worker() -> None:
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)
        try:
            while True:
                with lock:
                    path, headers, length = next(queue, (None, {}, None))
                if path is None:
                    return
                begin = time.perf_counter()
                connection.request("GET", path, headers=dict(headers))
                response = connection.getresponse()
                body = response.read()
                latencies.append(time.perf_counter() - begin)
                if response.status != 200 or (length is not None and len(body) != length):
                    errors.append(f"{response.status} {path}")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[:3]}")
    return latencies, wall


def _raw_gets(get: Callable[[T], object], keys: Sequence[T], concurrency: int, warmup: int = WARMUP) -> tuple[list[float], float]:
    """`get` of every key with `concurrency` in flight (threads); latencies (s) and wall time."""

    def timed(key: T) -> float:
        begin = time.perf_counter()
        get(key)
        return time.perf_counter() - begin

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, keys[:warmup]))
        wall = time.perf_counter()
        latencies = list(pool.map(timed, keys))
        wall = time.perf_counter() - wall
    return latencies, wall


@contextmanager
def _same_work(rt: Runtime, database_url: str) -> Iterator[Callable[[FloorRead], object]]:
    """The floor's read (bench/readfloor.py), on a connection of its own in each thread that calls it."""
    local = threading.local()
    floors: list[ContentFloor] = []
    lock = threading.Lock()

    def read(target: FloorRead) -> bytes:
        floor: ContentFloor | None = getattr(local, "floor", None)
        if floor is None:
            floor = local.floor = ContentFloor(rt, database_url)
            with lock:
                floors.append(floor)
        return floor.read(target)

    try:
        yield read
    finally:
        for floor in floors:
            floor.close()


def _store_get(store: ObjectStore) -> Callable[[str], object]:
    """The floor's GET: the store's own (one plain GET on a presigned URL, what every content read does), body read."""

    def get(key: str) -> bytes:
        with store.open(key) as body:
            return body.read()

    return get


def _boto3_get(settings: Settings, bucket: str, concurrency: int) -> Callable[[str], object]:
    """boto3's `get_object`, body read: reported beside the floor (boto3's client machinery costs more CPU than the GET)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint, aws_access_key_id=settings.s3_access_key, aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region, config=Config(max_pool_connections=concurrency, retries={"max_attempts": 2, "mode": "standard"}),
    )  # fmt: skip
    return lambda key: client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _unsaturated(get: Callable[[str], object], keys: list[str], most: int) -> tuple[int, list[dict[str, Any]]]:
    """The highest concurrency (1, 2, 4… up to `most`) at which the floor's GET's median stays within
    FLOOR_QUEUEING × its median at one request in flight; and every probe's summary."""
    probes: list[dict[str, Any]] = []
    chosen, concurrency = 1, 1
    while concurrency <= most:
        latencies, wall = _raw_gets(get, keys[:PROBE_REQUESTS], concurrency, warmup=min(WARMUP, 4 * concurrency))
        probes.append({"concurrency": concurrency, **_summary(latencies, wall)})
        if probes[-1]["p50"] > FLOOR_QUEUEING * probes[0]["p50"]:
            break
        chosen = concurrency
        concurrency *= 2
    return chosen, probes


def _serve(settings: Settings, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = dmp_environment(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [DMP, "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    wait_for_port(port, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every worker has run its lifespan once /v1/health answers repeatedly
        try:
            if all(httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).status_code == 200 for _ in range(8)):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise TimeoutError("the API did not come up")


def run(documents: int, concurrency: int, requests: int = 2000, server_workers: int = 2) -> dict[str, Any]:
    from pipeline.access.tokens import mint_token

    with tempfile.TemporaryDirectory(prefix="dmp-bench-read-") as tmp, throwaway_services(Path(tmp)) as services:
        root, settings = Path(tmp), services.settings
        server = None
        try:
            rt = Runtime.from_settings(settings, prepare=True)
            setup = time.monotonic()
            _seal_real(rt, root, min(REAL_DOCUMENTS, documents), REAL_PATIENTS)
            with rt.sessions() as session:
                real = list(session.scalars(select(Document).where(Document.live).order_by(Document.id)))
            if not real:
                raise RuntimeError("no document was sealed")
            by_patient: dict[str, int] = {}
            for d in real:
                by_patient[d.patient_id] = by_patient.get(d.patient_id, 0) + 1
            list_patient = max(by_patient, key=by_patient.__getitem__)
            filled = _fill(rt, services.postgres.url, real, documents, list_patient)
            setup = time.monotonic() - setup

            today = paris_date()
            readable = [d for d in real if d.hidden_from_patient_until is None or d.hidden_from_patient_until <= today]
            tokens = {pid: {"Authorization": f"Bearer {mint_token(settings, pid, 'patient', ttl_seconds=6 * 3600)}"} for pid in by_patient}
            reads = [(f"/v1/patients/{d.patient_id}/documents/{d.id}/content", tokens[d.patient_id], d.size) for d in readable]
            plan = [reads[i % len(reads)] for i in range(requests)]
            warm = [reads[i % len(reads)] for i in range(WARMUP)]
            keys = [readable[i % len(readable)].object_key for i in range(requests)]
            assert settings.storage_url is not None  # distributed_settings sets it
            bucket = settings.storage_url.removeprefix("s3://")
            list_call = (f"/v1/patients/{list_patient}/documents", tokens[list_patient], None)

            port = free_port()
            server = _serve(settings, port, server_workers)
            base = f"http://127.0.0.1:{port}"
            _plain(base, warm, concurrency)
            content_lat, content_wall = _plain(base, plan, concurrency)
            asyncio.run(_drive(base, [list_call] * 20, 1))
            listed = httpx.get(base + list_call[0], headers=list_call[1], timeout=30).json()
            api_cpu = cpu_seconds(server.pid)
            list_lat, list_wall = asyncio.run(_drive(base, [list_call] * LIST_REQUESTS, 1))
            list_cpu_ms = (cpu_seconds(server.pid) - api_cpu) * 1000 / LIST_REQUESTS
            plain_lat, plain_wall = _plain(base, [list_call] * LIST_REQUESTS, 1)
            list_conc_lat, list_conc_wall = _plain(base, [list_call] * LIST_REQUESTS, concurrency)

            get = _store_get(rt.store)
            floor_concurrency, probes = _unsaturated(get, keys, concurrency)
            get_lat, get_wall = _raw_gets(get, keys, floor_concurrency)
            # At `concurrency` in flight, the GET alone: the same work would take a connection of the index per read
            # in flight, on top of the API's pools, and the machine's server has room for 100 in all.
            loaded_floor_lat, loaded_floor_wall = _raw_gets(get, keys, concurrency)
            boto3_lat, boto3_wall = _raw_gets(_boto3_get(settings, bucket, floor_concurrency), keys, floor_concurrency)
            with _same_work(rt, services.postgres.url) as same_work:
                targets = [floor_read(rt, d) for d in readable]
                floor_plan = [targets[i % len(targets)] for i in range(requests)]
                floor_cpu = time.process_time()  # this process: the floor's only machinery
                floor_lat, floor_wall = _raw_gets(same_work, floor_plan, floor_concurrency)
                floor_cpu_ms = (time.process_time() - floor_cpu) * 1000 / len(floor_plan)
                api_cpu = cpu_seconds(server.pid)
                paced_lat, paced_wall = _plain(base, plan, floor_concurrency)
                content_cpu_ms = (cpu_seconds(server.pid) - api_cpu) * 1000 / len(plan)
            rt.close()
        finally:
            if server is not None:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
    loaded = _summary(content_lat, content_wall)
    loaded_floor = _summary(loaded_floor_lat, loaded_floor_wall)
    content = _summary(paced_lat, paced_wall)
    floor = _summary(floor_lat, floor_wall)
    get_alone = _summary(get_lat, get_wall)
    boto3_floor = _summary(boto3_lat, boto3_wall)
    seq = _summary(list_lat, list_wall)
    plain = _summary(plain_lat, plain_wall)
    conc = _summary(list_conc_lat, list_conc_wall)
    print_parts("read", {
        "list (1,000 documents)": f"p50 {plain['p50']} ms, p99 {plain['p99']} ms sequential (plain client); through httpx p50 "
                                  f"{seq['p50']}, p99 {seq['p99']} ms; p99 {conc['p99']} ms at {concurrency} in flight "
                                  f"({conc['rps']} requests/s)",
        "content": f"p50 {content['p50']} ms, p99 {content['p99']} ms at {floor_concurrency} in flight",
        "floor (same work)": f"p50 {floor['p50']} ms, p99 {floor['p99']} ms at {floor_concurrency} in flight (the same statements "
                             f"through psycopg, the store's GET, decryption): the highest of {[p['concurrency'] for p in probes]} "
                             f"whose GET's median stays within {FLOOR_QUEUEING}x one request's",
        "the GET alone": f"the store's p50 {get_alone['p50']} ms, p99 {get_alone['p99']} ms; boto3's get_object p50 "
                         f"{boto3_floor['p50']} ms, p99 {boto3_floor['p99']} ms",
        "ratio": f"{content['p99'] / floor['p99']:.3f} (target <= 2); to the GET alone {content['p99'] / get_alone['p99']:.3f}; "
                 f"list p99 target <= 10 ms",
        "CPU per request": f"API processes {content_cpu_ms:.2f} ms per content read (the floor's {floor_cpu_ms:.2f} ms), "
                           f"{list_cpu_ms:.2f} ms per list",
        f"at {concurrency} in flight": f"content p99 {loaded['p99']} ms ({loaded['rps']}/s), the GET alone p99 {loaded_floor['p99']} ms "
                                       f"({loaded_floor['rps']}/s)",
    })  # fmt: skip
    return {
        "bench": "read",
        "metric": "content_read_p99_ms",
        "value": content["p99"],
        "unit": "ms",
        "floor": floor["p99"],
        "ratio": round(content["p99"] / floor["p99"], 3),
        "content_p50_ms": content["p50"],
        "content_max_ms": content["max"],
        "content_rps": content["rps"],
        "floor_p50_ms": floor["p50"],
        "floor_rps": floor["rps"],
        "get_p50_ms": get_alone["p50"],  # the store's GET alone (no index, no decryption)
        "get_p99_ms": get_alone["p99"],
        "ratio_to_get": round(content["p99"] / get_alone["p99"], 3),
        "floor_boto3_p50_ms": boto3_floor["p50"],
        "floor_boto3_p99_ms": boto3_floor["p99"],
        "floor_concurrency": floor_concurrency,
        "floor_probes": probes,
        "at_concurrency": {  # at `concurrency` in flight: throughput, and a p99 that is mostly queueing; floor: the GET alone
            "content_p50_ms": loaded["p50"],
            "content_p99_ms": loaded["p99"],
            "content_max_ms": loaded["max"],
            "content_rps": loaded["rps"],
            "floor_p50_ms": loaded_floor["p50"],
            "floor_p99_ms": loaded_floor["p99"],
            "floor_rps": loaded_floor["rps"],
            "ratio": round(loaded["p99"] / loaded_floor["p99"], 3),
        },
        "content_api_cpu_ms": round(content_cpu_ms, 2),  # the API processes' CPU per content read (without PostgreSQL, moto)
        "floor_cpu_ms": round(floor_cpu_ms, 2),  # the floor's own CPU per read (this process; without PostgreSQL, moto)
        "list_api_cpu_ms": round(list_cpu_ms, 2),
        "list_p50_ms": plain["p50"],
        "list_p99_ms": plain["p99"],
        "list_rps": plain["rps"],
        "list_httpx_p50_ms": seq["p50"],
        "list_httpx_p99_ms": seq["p99"],
        "list_concurrent_p50_ms": conc["p50"],
        "list_concurrent_p99_ms": conc["p99"],
        "list_concurrent_rps": conc["rps"],
        "list_total": listed.get("total"),
        "documents": len(real) + filled,
        "real_documents": len(real),
        "read_targets": len(readable),
        "mean_size_bytes": round(sum(d.size for d in readable) / len(readable)),
        "requests": requests,
        "concurrency": concurrency,
        "server_workers": server_workers,
        "targets": {"ratio_max": 2.0, "list_p99_ms_max": 10.0},
        "content_within_target": content["p99"] <= 2 * floor["p99"],
        "list_within_target": plain["p99"] <= 10.0,
        "setup_seconds": round(setup, 1),
    }
