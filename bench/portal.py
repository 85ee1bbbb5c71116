"""Portal benchmark: server time of the patient's pages against the same data through the JSON API (the floor).

value: p99 of `GET /patient/documents` (the portal's list page: session, access gate and audit, one page of the
listing, titles opened, the page rendered) for a patient holding 1,000 documents in an index of `documents` rows.
floor: p99 of `GET /v1/patients/{p}/documents?page_size=20` (the same page through the JSON API, bearer token).
ratio = value / floor (target ≤ 1.5, and value ≤ 50 ms). Also the p50s, and the document page
(`/patient/documents/{id}`) against its API call (`GET …/documents/{id}`, the metadata).

Both are driven in-process (Starlette's TestClient: the ASGI app, no socket), alternating portal and API requests
so that both see the same machine; the time is the server's work plus the same small client overhead on both.
Embedded mode (SQLite) unless DMP_DATABASE_URL names another index. A few real documents are sealed through the
pipeline; the index is then filled with rows (never read: sealed titles for the list patient's, nothing else).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from pipeline.core.settings import Settings
from pipeline.documents.titles import document_titles, seal_title
from pipeline.index.models import Batch, BatchItem, Document, Patient
from pipeline.index.states import ItemState, RecordStatus
from pipeline.runtime import Runtime

LIST_PATIENT_DOCUMENTS = 1000
FILLER_PER_PATIENT = 50
CHUNK = 5000
PAGE_SIZE = 20  # the portal's page (api/portal/reading.py); the API is asked the same
WARMUP = 30


def _pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in seconds)
    return {"p50": round(_pct(ms, 0.5), 2), "p99": round(_pct(ms, 0.99), 2), "max": round(ms[-1], 2)}


def _fill(rt: Runtime, total: int, list_patient: str) -> int:
    """Rows until the index holds `total` documents, `LIST_PATIENT_DOCUMENTS` of them on `list_patient`."""
    with rt.sessions() as session:
        documents = list(session.scalars(select(Document)))
    missing = total - len(documents)
    if missing <= 0:
        return 0
    template = next(d for d in documents if d.patient_id == list_patient)
    title = document_titles(rt, [template])[template.id] or "Compte rendu"
    list_key = rt.record_keys.get(template.record_key_id).key
    owner, owner_left = list_patient, max(0, LIST_PATIENT_DOCUMENTS - sum(d.patient_id == list_patient for d in documents))
    batch_id = str(uuid.uuid4())
    patients: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for n in range(missing):
        if owner_left == 0:
            owner, owner_left = str(uuid.uuid4()), FILLER_PER_PATIENT
            patients.append({"id": owner, "ins": f"9{len(patients):014d}", "status": RecordStatus.OPEN})
        owner_left -= 1
        doc_id, item_id = str(uuid.uuid4()), str(uuid.uuid4())
        items.append({"id": item_id, "batch_id": batch_id, "slot": f"row:{n + 1}", "file": f"fill-{n}.pdf", "state": ItemState.INDEXED,
                      "document_id": doc_id})  # fmt: skip
        rows.append({
            "id": doc_id, "patient_id": owner, "source": "hospital:BENCH-FILL", "source_document_id": f"FILL-{n}", "batch_item_id": item_id,
            "title_sealed": seal_title(list_key, title, doc_id, owner) if owner == list_patient else None,
            "class_code": template.class_code, "type_code": template.type_code, "classified_by": template.classified_by,
            "service_date": dt.date(2015, 1, 1) + dt.timedelta(days=n % 3000), "author_id": template.author_id,
            "author_profession": template.author_profession, "mime_type": template.mime_type, "size": template.size,
            "content_hmac": secrets.token_hex(32), "object_key": f"fill/{doc_id}", "record_key_id": template.record_key_id,
            "wrapped_key": secrets.token_bytes(60),
        })  # fmt: skip
    with rt.sessions() as session:
        session.execute(insert(Batch), [{"id": batch_id, "source": "hospital:BENCH-FILL", "manifest_digest": secrets.token_hex(32),
                                         "total": missing}])  # fmt: skip
        for table, values in ((Patient, patients), (BatchItem, items), (Document, rows)):
            for start in range(0, len(values), CHUNK):
                session.execute(insert(table), values[start : start + CHUNK])
        session.commit()
    return missing


def run(documents: int = 100_000, requests: int = 300) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from bench.read import _seal_real
    from pipeline.access.tokens import mint_token

    with tempfile.TemporaryDirectory(prefix="dmp-bench-portal-") as tmp:
        root = Path(tmp)
        settings = Settings(home=root / "home", database_url=os.environ.get("DMP_DATABASE_URL"), notify_in_api=False)
        rt = Runtime.from_settings(settings, prepare=True)
        _seal_real(rt, root, 60, 3)
        with rt.sessions() as session:
            real = list(session.scalars(select(Document)))
        patient = max({d.patient_id for d in real}, key=lambda p: sum(d.patient_id == p for d in real))
        document = next(d for d in real if d.patient_id == patient)
        filled = _fill(rt, documents, patient)
        app = create_app(settings)
        with TestClient(app, client=("127.0.0.1", 50000)) as client:
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
            assert csrf is not None
            client.post("/signin/demo", data={"csrf": csrf.group(1), "identity": f"patient:{patient}"})
            bearer = {"Authorization": f"Bearer {mint_token(settings, patient, 'patient')}"}
            pairs: dict[str, tuple[tuple[str, dict[str, str]], tuple[str, dict[str, str]]]] = {
                "list": (("/patient/documents", {}), (f"/v1/patients/{patient}/documents?page_size={PAGE_SIZE}", bearer)),
                "document": ((f"/patient/documents/{document.id}", {}), (f"/v1/patients/{patient}/documents/{document.id}", bearer)),
            }
            timings: dict[str, dict[str, list[float]]] = {}
            for name, ((page, page_headers), (api, api_headers)) in pairs.items():
                portal_s: list[float] = []
                api_s: list[float] = []
                for n in range(WARMUP + requests):
                    for path, headers, into in ((page, page_headers, portal_s), (api, api_headers, api_s)):
                        begin = time.perf_counter()
                        response = client.get(path, headers=headers)
                        elapsed = time.perf_counter() - begin
                        if response.status_code != 200:
                            raise RuntimeError(f"{path}: {response.status_code}")
                        if n >= WARMUP:
                            into.append(elapsed)
                timings[name] = {"portal": portal_s, "api": api_s}
        rt.close()
    result: dict[str, Any] = {"documents": documents, "filled": filled, "list_patient_documents": LIST_PATIENT_DOCUMENTS,
                              "requests": requests, "index": "postgresql" if settings.database_url else "sqlite"}  # fmt: skip
    for name, measured in timings.items():
        result[name] = {"portal": _summary(measured["portal"]), "api": _summary(measured["api"])}
        result[name]["ratio_p50"] = round(result[name]["portal"]["p50"] / result[name]["api"]["p50"], 2)
        result[name]["ratio_p99"] = round(result[name]["portal"]["p99"] / result[name]["api"]["p99"], 2)
    value, floor = result["list"]["portal"]["p99"], result["list"]["api"]["p99"]
    return {"bench": "portal", "metric": "document list page p99 (server, in-process)", "value": value, "unit": "ms",
            "floor": floor, "ratio": round(value / floor, 2), **result}  # fmt: skip
