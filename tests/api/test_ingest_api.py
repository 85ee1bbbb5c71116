"""HTTP ingestion, embedded mode: sources submit documents, batches and feeds with their API keys."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.carehistory.feedformat import ALL_FIELDS
from pipeline.core.identity import with_key
from pipeline.core.settings import Settings
from pipeline.runtime import Runtime
from pipeline.sources import add_source, revoke_source
from tests.conftest import read_expected, zip_folder
from tests.hostile.archives import hostile_archives

pytestmark = pytest.mark.slow  # whole submissions through the API and the workers

LIMIT = 4 * 1024 * 1024
FILE_LIMIT = 1024 * 1024
ARCHIVE_LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory, sample_batch):
    """An embedded API with one hospital, one lab and one insurer holding API keys."""
    settings = Settings(
        home=tmp_path_factory.mktemp("ingest-api") / "home",
        upload_max_request_bytes=LIMIT,
        max_file_bytes=FILE_LIMIT,
        archive_max_uncompressed_bytes=ARCHIVE_LIMIT,
    )
    rt = Runtime.from_settings(settings, prepare=True)
    keys = {}
    with rt.sessions() as session:
        for source in ("hospital:CHU-API", "lab:BIO-API", "insurer:CNAM-API", "hospital:OTHER"):
            keys[source] = {"Authorization": f"Bearer {add_source(session, rt.hmac_secret, source)}"}
    with TestClient(create_app(settings)) as client:
        yield client, keys, rt
    rt.close()


def _wait_final(client: TestClient, url: str, headers: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(url, headers=headers).json()
        if status["kind"] == "feed" and status["counts"]["pending_lines"] == 0:
            return status
        if status["kind"] == "batch" and all(item["state"] in ("indexed", "rejected") for item in status["items"]):
            return status
        time.sleep(0.2)
    raise TimeoutError(url)


def _outcome(status: dict) -> dict[str, tuple[str, str]]:
    return {item["file"]: (item["state"], item["reason"] or "") for item in status["items"]}


def _expected(batch: Path) -> dict[str, tuple[str, str]]:
    return {name: (row["expected_state"], row["expected_reason"]) for name, row in read_expected(batch).items()}


def _inbox(rt: Runtime, timeout: float = 120) -> list[str]:
    """What the inbox holds once every item submitted so far (by any test) is final."""
    from sqlalchemy import func, select

    from pipeline.index.models import BatchItem

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            unfinished = session.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state.in_(("queued", "processing"))))
        if not unfinished:
            break
        time.sleep(0.2)
    return list(rt.store.list_keys("inbox/"))


def _feed_csv(line_ids: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ALL_FIELDS, lineterminator="\n")
    writer.writeheader()
    common = {"patient_ins": with_key("2850575123456"), "care_date": "2026-01-10", "act_code": "C", "act_label": "Consultation",
              "professional_id": "1", "professional_name": "Dr A", "profession": "physician", "amount_billed": "26.50",
              "amount_reimbursed": "18.55", "reimbursement_date": "2026-01-20", "supersedes": ""}  # fmt: skip
    writer.writerows({"line_id": line_id, **common} for line_id in line_ids)
    return out.getvalue().encode()


# Submissions


def test_a_zip_batch_is_accepted_and_every_document_ends_as_expected(world, sample_batch):
    client, keys, rt = world
    answer = client.post(
        "/v1/ingest/batches", content=zip_folder(sample_batch), headers={**keys["hospital:CHU-API"], "Content-Type": "application/zip"}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status_url"] == f"/v1/ingest/batches/{body['batch']}" == answer.headers["location"]
    status = _wait_final(client, body["status_url"], keys["hospital:CHU-API"])
    assert _outcome(status) == _expected(sample_batch)
    assert not _inbox(rt)


def test_a_multipart_batch_ends_like_the_same_zip(world, sample_batch):
    client, keys, rt = world
    files = [("manifest", ("manifest.csv", (sample_batch / "manifest.csv").read_bytes()))]
    files += [("file", (p.name, p.read_bytes())) for p in sorted(sample_batch.iterdir()) if p.name not in ("manifest.csv", "expected.csv")]
    answer = client.post("/v1/ingest/batches", files=files, headers=keys["lab:BIO-API"])
    assert answer.status_code == 202, answer.text
    status = _wait_final(client, answer.json()["status_url"], keys["lab:BIO-API"])
    assert _outcome(status) == _expected(sample_batch)
    assert not _inbox(rt)


def test_one_document_with_its_metadata_is_indexed_and_classified(world, sample_batch):
    client, keys, _ = world
    row = next(r for r in read_expected(sample_batch).values() if r["expected_state"] == "indexed")
    with (sample_batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        manifest_row = next(r for r in csv.DictReader(handle) if r["file"] == row["file"])
    metadata = {k: v for k, v in manifest_row.items() if k != "file"} | {"source_document_id": "SINGLE-1"}
    files = {"metadata": (None, json.dumps(metadata)), "file": (row["file"], (sample_batch / row["file"]).read_bytes())}
    answer = client.post("/v1/ingest/documents", files=files, headers=keys["hospital:CHU-API"])
    assert answer.status_code == 202, answer.text
    (item,) = _wait_final(client, answer.json()["status_url"], keys["hospital:CHU-API"])["items"]
    assert (item["state"], item["class_code"], item["type_code"]) == ("indexed", row["class_code"], row["type_code"])


def test_metadata_missing_a_required_field_is_422(world, sample_batch):
    client, keys, rt = world
    files = {"metadata": (None, json.dumps({"title": "x"})), "file": ("a.pdf", b"%PDF-1.4")}
    answer = client.post("/v1/ingest/documents", files=files, headers=keys["hospital:CHU-API"])
    assert (answer.status_code, answer.json()["code"]) == (422, "metadata_invalid")
    assert not _inbox(rt)


def test_the_insurer_pushes_a_feed_and_reads_its_outcome(world):
    client, keys, _ = world
    headers = {**keys["insurer:CNAM-API"], "Content-Type": "text/csv"}
    answer = client.post("/v1/ingest/feeds", content=_feed_csv(["F1", "F2", "F3"]), headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status_url"] == f"/v1/ingest/feeds/{answer.json()['feed']}"
    status = _wait_final(client, answer.json()["status_url"], keys["insurer:CNAM-API"])
    assert status["total"] == 3 and status["counts"]["accepted"] + status["counts"]["rejected"] == 3


def test_a_zip_without_manifest_is_422_manifest_missing(world, sample_batch):
    client, keys, rt = world
    answer = client.post(
        "/v1/ingest/batches",
        content=zip_folder(sample_batch, only=["doc-000001.pdf"]),
        headers={**keys["hospital:CHU-API"], "Content-Type": "application/zip"},
    )
    assert (answer.status_code, answer.json()["code"]) == (422, "manifest_missing")
    assert not _inbox(rt)


@pytest.mark.parametrize("reason", sorted(hostile_archives(ARCHIVE_LIMIT)))
def test_a_hostile_zip_is_422_with_its_reason_and_leaves_nothing(world, reason):
    client, keys, rt = world
    data = hostile_archives(ARCHIVE_LIMIT)[reason]
    answer = client.post("/v1/ingest/batches", content=data, headers={**keys["hospital:CHU-API"], "Content-Type": "application/zip"})
    assert (answer.status_code, answer.json()["code"]) == (422, reason)
    assert not _inbox(rt)


@pytest.mark.parametrize("name", ["../doc.pdf", "/doc.pdf"])
def test_an_uploaded_file_named_outside_the_batch_is_422(world, sample_batch, name):
    client, keys, rt = world
    files = [("manifest", ("manifest.csv", (sample_batch / "manifest.csv").read_bytes())), ("file", (name, b"%PDF-1.4"))]
    answer = client.post("/v1/ingest/batches", files=files, headers=keys["hospital:CHU-API"])
    assert answer.status_code == 422 and answer.json()["code"] in ("archive_path_traversal", "archive_absolute_path")
    assert not _inbox(rt)


def test_an_unsupported_content_type_is_415(world):
    client, keys, _ = world
    answer = client.post("/v1/ingest/batches", content=b"x", headers={**keys["hospital:CHU-API"], "Content-Type": "text/plain"})
    assert (answer.status_code, answer.json()["code"]) == (415, "unsupported_media_type")


# Idempotency


def _fresh_zip(batch: Path, tag: bytes) -> bytes:
    """The sample batch under a manifest never seen before (a new batch identity)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(batch.iterdir()):
            zf.writestr(path.name, path.read_bytes() + (b"\n" + tag if path.name == "manifest.csv" else b""))
    return out.getvalue()


def _snapshot(rt: Runtime) -> tuple[int, int, list[str]]:
    from sqlalchemy import func, select

    from pipeline.index.models import Batch, BatchItem

    with rt.sessions() as session:
        counts = session.scalar(select(func.count()).select_from(Batch)), session.scalar(select(func.count()).select_from(BatchItem))
    return *counts, sorted(rt.store.list_keys())


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_creates_nothing(world, sample_batch):
    client, keys, rt = world
    headers = {**keys["hospital:CHU-API"], "Content-Type": "application/zip", "Idempotency-Key": "upload-7f3a"}
    data = _fresh_zip(sample_batch, b"#retry")
    first = client.post("/v1/ingest/batches", content=data, headers=headers)
    assert first.status_code == 202 and first.json()["resumed"] is False
    _wait_final(client, first.json()["status_url"], keys["hospital:CHU-API"])
    before = _snapshot(rt)
    again = client.post("/v1/ingest/batches", content=data, headers=headers)
    assert (again.status_code, again.json(), again.headers["idempotent-replayed"]) == (202, first.json(), "true")
    assert _snapshot(rt) == before


def test_an_idempotency_key_used_on_another_route_is_422(world, sample_batch):
    client, keys, _ = world
    headers = {**keys["hospital:CHU-API"], "Idempotency-Key": "used-twice"}
    first = client.post(
        "/v1/ingest/batches", content=_fresh_zip(sample_batch, b"#route"), headers={**headers, "Content-Type": "application/zip"}
    )
    assert first.status_code == 202
    files = {"metadata": (None, "{}"), "file": ("a.pdf", b"%PDF-1.4")}
    answer = client.post("/v1/ingest/documents", files=files, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (422, "idempotency_key_reused")


def test_a_key_whose_first_request_failed_serves_the_retry(world, sample_batch):
    client, keys, _ = world
    headers = {**keys["hospital:CHU-API"], "Content-Type": "application/zip", "Idempotency-Key": "fix-and-retry"}
    failed = client.post("/v1/ingest/batches", content=zip_folder(sample_batch, only=["doc-000001.pdf"]), headers=headers)
    assert failed.status_code == 422
    retried = client.post("/v1/ingest/batches", content=_fresh_zip(sample_batch, b"#fixed"), headers=headers)
    assert retried.status_code == 202 and "idempotent-replayed" not in retried.headers


def test_a_malformed_idempotency_key_is_400(world):
    client, keys, _ = world
    headers = {**keys["hospital:CHU-API"], "Content-Type": "application/zip", "Idempotency-Key": "tab\there"}
    answer = client.post("/v1/ingest/batches", content=b"PK", headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_idempotency_key")


# Back-pressure


def test_a_full_queue_answers_429_with_retry_after_and_accepts_once_drained(world, sample_batch, tmp_path, monkeypatch):
    from pipeline.documents.process import process_item
    from pipeline.ingest.intake import receive_batch

    client, keys, rt = world
    monkeypatch.setattr(rt.settings, "ingest_max_queued", 0)  # the app's settings object too
    waiting: list[str] = []
    receive_batch(rt, sample_batch, "hospital:STUCK", waiting.append)  # recorded, not yet taken by a worker
    headers = {**keys["hospital:CHU-API"], "Content-Type": "application/zip", "Idempotency-Key": "after-429"}
    full = client.post("/v1/ingest/batches", content=_fresh_zip(sample_batch, b"#429"), headers=headers)
    assert (full.status_code, full.json()["code"]) == (429, "queue_full")
    assert full.headers["retry-after"] == str(rt.settings.ingest_retry_after_seconds) == str(full.json()["retry_after_seconds"])
    for item_id in waiting:  # the workers catch up
        process_item(rt, item_id)
    _inbox(rt)
    accepted = client.post("/v1/ingest/batches", content=_fresh_zip(sample_batch, b"#429"), headers=headers)
    assert accepted.status_code == 202


# Credentials and scopes


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer dmpk_0123456789abcdef_wrong", "Bearer not-a-key", "Basic dXNlcjpwYXNz"],
    ids=["none", "unknown", "malformed", "basic"],
)
def test_a_submission_without_a_valid_key_is_401(world, authorization):
    client, _, _ = world
    headers = {"Content-Type": "application/zip"} | ({"Authorization": authorization} if authorization else {})
    answer = client.post("/v1/ingest/batches", content=b"PK", headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_credentials")
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_a_user_token_does_not_open_the_ingestion_routes(world):
    client, _, rt = world
    token = mint_token(rt.settings, "10001234567", "professional", profession="physician", rpps="10001234567")
    answer = client.post(
        "/v1/ingest/batches", content=b"PK", headers={"Authorization": f"Bearer {token}", "Content-Type": "application/zip"}
    )
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_credentials")


def test_a_revoked_key_is_401(world, sample_batch):
    client, _, rt = world
    with rt.sessions() as session:
        key = add_source(session, rt.hmac_secret, "lab:GONE")
        revoke_source(session, "lab:GONE")
    answer = client.post("/v1/ingest/batches", content=b"PK", headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"})
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_credentials")


def test_a_key_s_holder_is_told_which_source_it_is_and_what_it_may_submit(world):
    client, keys, _ = world
    assert client.get("/v1/ingest/source", headers=keys["lab:BIO-API"]).json() == {"source": "lab:BIO-API", "may_submit": ["documents"]}
    assert client.get("/v1/ingest/source", headers={"Authorization": "Bearer dmpk_unknown"}).status_code == 401


def test_a_lab_pushing_a_feed_is_403(world):
    client, keys, _ = world
    answer = client.post("/v1/ingest/feeds", content=_feed_csv(["L1"]), headers={**keys["lab:BIO-API"], "Content-Type": "text/csv"})
    assert (answer.status_code, answer.json()["code"]) == (403, "source_not_allowed")


@pytest.mark.parametrize("route", ["/v1/ingest/batches", "/v1/ingest/documents"])
def test_the_insurer_pushing_documents_is_403(world, route):
    client, keys, _ = world
    answer = client.post(route, content=b"PK", headers={**keys["insurer:CNAM-API"], "Content-Type": "application/zip"})
    assert (answer.status_code, answer.json()["code"]) == (403, "source_not_allowed")


def test_a_source_reads_only_its_own_batches(world, sample_batch):
    client, keys, _ = world
    answer = client.post(
        "/v1/ingest/batches", content=zip_folder(sample_batch), headers={**keys["hospital:CHU-API"], "Content-Type": "application/zip"}
    )
    url = answer.json()["status_url"]
    assert client.get(url, headers=keys["hospital:CHU-API"]).status_code == 200
    assert client.get(url, headers=keys["hospital:OTHER"]).status_code == 404
    assert client.get("/v1/ingest/batches/no-such-batch", headers=keys["hospital:CHU-API"]).status_code == 404


# Limits


def test_a_request_announced_over_the_limit_is_413_before_reading(world):
    client, keys, _ = world
    headers = {**keys["hospital:CHU-API"], "Content-Type": "application/zip", "Content-Length": str(LIMIT + 1)}
    answer = client.post("/v1/ingest/batches", content=b"PK", headers=headers)
    assert (answer.status_code, answer.json()["code"], answer.json()["limit_bytes"]) == (413, "payload_too_large", LIMIT)


def test_a_streamed_request_past_the_limit_is_413_and_leaves_nothing(world):
    client, keys, rt = world

    def chunks():
        for _ in range(LIMIT // 65536 + 2):
            yield b"\0" * 65536

    answer = client.post("/v1/ingest/batches", content=chunks(), headers={**keys["hospital:CHU-API"], "Content-Type": "application/zip"})
    assert (answer.status_code, answer.json()["limit_bytes"]) == (413, LIMIT)
    assert not _inbox(rt)


def test_a_file_part_past_the_per_file_limit_is_413_and_leaves_nothing(world, sample_batch):
    client, keys, rt = world
    files = [("manifest", ("manifest.csv", (sample_batch / "manifest.csv").read_bytes())), ("file", ("big.pdf", b"%" * (FILE_LIMIT + 1)))]
    answer = client.post("/v1/ingest/batches", files=files, headers=keys["hospital:CHU-API"])
    assert (answer.status_code, answer.json()["code"], answer.json()["limit_bytes"]) == (413, "payload_too_large", FILE_LIMIT)
    assert not _inbox(rt)
