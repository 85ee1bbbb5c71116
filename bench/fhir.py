"""FHIR MHD benchmark on throwaway Redis, PostgreSQL and moto_server (S3), through `dmp api` (real uvicorn).

value: documents/s deposited through ITI-65 (`POST /fhir`, one transaction Bundle per patient, `clients`
concurrent senders) until every answer is in: each Bundle parsed and checked with the model library, its
bytes put in the inbox, its items recorded and one message sent (no worker runs, as `bench upload`).
floor: the same documents as zips through `POST /v1/ingest/batches` (one zip per patient, same senders).
ratio = value / floor (target ≥ 0.8).

Also: ITI-67 search p99 (`GET /fhir/DocumentReference?patient.identifier=…`, first page: the server's default
20, `DEFAULT_COUNT`) for a patient holding 1,000 documents in an index of `index_documents` rows (target
≤ 20 ms), sequential; beside it the p99 of /v1's document list of the same patient on the same server (the same listing without FHIR).
The index is built as `bench read` builds it (bench/read.py: real sealed documents, then COPY filler rows).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import os
import signal
import subprocess
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bench.measure import cpu_seconds
from bench.read import _drive, _fill, _seal_real, _summary
from bench.upload import _api
from infra.services import throwaway_services
from pipeline.core.identity import INS_OID_NIR
from pipeline.index.models import Document, Patient
from pipeline.ingest.manifest import MANIFEST_NAME
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from pipeline.sharing.bundles import provide_bundle
from pipeline.sources import add_source

SEARCH_REQUESTS = 300
WARMUP = 30


def _payloads(root: Path, documents: int, patients: int) -> tuple[list[bytes], list[bytes], int]:
    """Per patient: the ITI-65 Bundle and the zip batch of the same documents; and how many documents."""
    sample = root / "sample"
    generate_samples(sample, patients=patients, documents=documents, seed=2028, bad=False)
    with (sample / MANIFEST_NAME).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames or [], list(reader)
    by_patient: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_patient[row["patient_ins"]].append(row)
    bundles, zips = [], []
    for ins, mine in by_patient.items():
        contents = [(sample / row["file"]).read_bytes() for row in mine]
        bundles.append(provide_bundle(ins, mine, contents).model_dump_json(exclude_none=True).encode())
        manifest = io.StringIO()
        writer = csv.DictWriter(manifest, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(mine)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_NAME, manifest.getvalue())
            for row, content in zip(mine, contents, strict=True):
                archive.writestr(row["file"], content)
        zips.append(out.getvalue())
    return bundles, zips, len(rows)


def _post(client: httpx.Client, path: str, key: str, data: bytes, content_type: str, status: int) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    answer = client.post(path, content=data, headers=headers, timeout=600)
    if answer.status_code != status:
        raise RuntimeError(f"{path} refused: {answer.status_code} {answer.text[:300]}")


def _deposit(client: httpx.Client, path: str, key: str, payloads: list[bytes], content_type: str, status: int, clients: int) -> float:
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda data: _post(client, path, key, data, content_type, status), payloads))
    return time.monotonic() - start


def _client(base: str, clients: int) -> httpx.Client:
    """One client for every sender thread, its connections kept open as a sending system keeps them: a client
    (and its TLS context) per request would cost the driver ~47 ms of CPU per Bundle on the cores it shares."""
    return httpx.Client(base_url=base, limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients))


def _stop(server: subprocess.Popen[bytes] | None) -> None:
    if server is not None and server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _deposits(documents: int, patients: int, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dmp-bench-fhir-") as tmp, throwaway_services(Path(tmp), ingest_max_queued=10**9) as services:
        root, settings = Path(tmp), services.settings
        bundles, zips, count = _payloads(root, documents, patients)
        rt = Runtime.from_settings(settings)
        rt.store.ensure_ready()
        with rt.sessions() as session:
            fhir_key = add_source(session, rt.hmac_secret, "hospital:BENCH-FHIR")
            zip_key = add_source(session, rt.hmac_secret, "hospital:BENCH-ZIP")
        rt.close()
        server = None
        try:
            server, base = _api(settings, root, 1)
            with _client(base, clients) as client:
                _post(client, "/fhir", fhir_key, bundles[0], "application/fhir+json", 200)  # warm: imports, pools, models
                _post(client, "/v1/ingest/batches", zip_key, zips[0], "application/zip", 202)
                # The server's own CPU per door (its process tree's kernel counters): stable when the machine is loaded.
                cpu = cpu_seconds(server.pid)
                fhir_seconds = _deposit(client, "/fhir", fhir_key, bundles[1:], "application/fhir+json", 200, clients)
                fhir_cpu = cpu_seconds(server.pid) - cpu
                cpu = cpu_seconds(server.pid)
                zip_seconds = _deposit(client, "/v1/ingest/batches", zip_key, zips[1:], "application/zip", 202, clients)
                zip_cpu = cpu_seconds(server.pid) - cpu
        finally:
            _stop(server)
    measured = count - (count // len(bundles) if bundles else 0)
    return {"documents": count, "measured_documents": measured, "fhir_seconds": fhir_seconds, "zip_seconds": zip_seconds,
            "fhir_cpu_ms": round(fhir_cpu * 1000 / measured, 3), "zip_cpu_ms": round(zip_cpu * 1000 / measured, 3),
            "bundles": len(bundles), "bundle_mean_bytes": round(sum(map(len, bundles)) / len(bundles))}  # fmt: skip


def _searches(index_documents: int) -> dict[str, Any]:
    from pipeline.access.tokens import mint_token

    with tempfile.TemporaryDirectory(prefix="dmp-bench-fhir-search-") as tmp, throwaway_services(Path(tmp)) as services:
        root, settings = Path(tmp), services.settings
        rt = Runtime.from_settings(settings, prepare=True)
        _seal_real(rt, root, min(300, index_documents), 30)
        with rt.sessions() as session:
            real = list(session.scalars(select(Document).where(Document.live).order_by(Document.id)))
            counts: dict[str, int] = defaultdict(int)
            for d in real:
                counts[d.patient_id] += 1
            patient_id = max(counts, key=counts.__getitem__)
            ins = session.scalars(select(Patient.ins).where(Patient.id == patient_id)).one()
        filled = _fill(rt, services.postgres.url, real, index_documents, patient_id)
        rt.close()
        token = {"Authorization": f"Bearer {mint_token(settings, patient_id, 'patient', ttl_seconds=3600)}"}
        search = (f"/fhir/DocumentReference?patient.identifier=urn:oid:{INS_OID_NIR}|{ins}", token, None)
        listing = (f"/v1/patients/{patient_id}/documents", token, None)
        server = None
        try:
            server, base = _api(settings, root, 1)
            asyncio.run(_drive(base, [search] * WARMUP + [listing] * WARMUP, 1))
            found = httpx.get(base + search[0], headers=token, timeout=30).json()
            search_lat, search_wall = asyncio.run(_drive(base, [search] * SEARCH_REQUESTS, 1))
            list_lat, list_wall = asyncio.run(_drive(base, [listing] * SEARCH_REQUESTS, 1))
        finally:
            _stop(server)
    return {"search": _summary(search_lat, search_wall), "list": _summary(list_lat, list_wall), "total": found.get("total"),
            "index_documents": len(real) + filled}  # fmt: skip


def run(documents: int, patients: int, clients: int, index_documents: int) -> dict[str, Any]:
    deposits = _deposits(documents, patients, clients)
    searches = _searches(index_documents)
    value = deposits["measured_documents"] / deposits["fhir_seconds"]
    floor = deposits["measured_documents"] / deposits["zip_seconds"]
    return {
        "bench": "fhir",
        "metric": "iti65_documents_per_second",
        "value": round(value, 1),
        "unit": "docs/s",
        "floor": round(floor, 1),
        "ratio": round(value / floor, 3),
        "server_cpu_ms_per_document": {"iti65": deposits["fhir_cpu_ms"], "zip": deposits["zip_cpu_ms"]},
        "search_p50_ms": searches["search"]["p50"],
        "search_p99_ms": searches["search"]["p99"],
        "search_total": searches["total"],
        "list_p99_ms": searches["list"]["p99"],
        "index_documents": searches["index_documents"],
        "documents": deposits["documents"],
        "bundles": deposits["bundles"],
        "bundle_mean_bytes": deposits["bundle_mean_bytes"],
        "clients": clients,
        "targets": {"ratio_min": 0.8, "search_p99_ms_max": 20.0},
        "within_target": value / floor >= 0.8 and searches["search"]["p99"] <= 20.0,
    }
