"""HTTP ingestion through real HTTP: `dmp api` (uvicorn on a loopback port) on Redis, PostgreSQL and
the S3 endpoint, with `dmp worker` processes doing the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from infra.services import dmp_environment, free_port
from pipeline.core.settings import Settings
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from pipeline.samples.feed import write_feed
from pipeline.sources import add_source
from tests.conftest import zip_folder
from tests.distributed.conftest import DMP, wait_until_final
from tests.distributed.test_pipeline_distributed import _assert_exactly_as_expected, _snapshot
from tests.hostile.archives import hostile_archives

pytestmark = pytest.mark.distributed
ARCHIVE_LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def batch_500(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("http") / "batch"
    generate_samples(out, patients=20, documents=500, seed=8)
    return out


@pytest.fixture
def runtime(settings) -> Iterator[Runtime]:
    rt = Runtime.from_settings(settings)
    yield rt
    rt.close()


@pytest.fixture
def api(settings, tmp_path) -> Iterator[Callable[..., str]]:
    """Start `dmp api` on a free loopback port with `settings` (plus overrides); returns its base URL."""
    servers: list[subprocess.Popen] = []

    def start(**overrides: object) -> str:
        port = free_port()
        log = (tmp_path / f"api-{port}.log").open("wb")
        env = dmp_environment(settings.model_copy(update=overrides))
        server = subprocess.Popen(
            [DMP, "api", "--port", str(port), "--no-access-log"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        servers.append(server)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / f"api-{port}.log").read_text()
            try:
                if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                    return base
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError("dmp api did not answer")

    yield start
    for server in servers:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _key(settings: Settings, source: str) -> dict[str, str]:
    rt = Runtime.from_settings(settings)
    with rt.sessions() as session:
        key = add_source(session, rt.hmac_secret, source)
    rt.close()
    return {"Authorization": f"Bearer {key}"}


def _post_zip(base: str, data: bytes, headers: dict[str, str]) -> httpx.Response:
    chunks = (data[at : at + 65536] for at in range(0, len(data), 65536))  # sent as it is read: chunked, no length
    return httpx.post(base + "/v1/ingest/batches", content=chunks, headers={**headers, "Content-Type": "application/zip"}, timeout=120)


def test_a_hospital_uploads_500_documents_and_a_retry_with_its_key_creates_nothing(settings, runtime, workers, api, batch_500):
    base = api()
    headers = {**_key(settings, "hospital:CHU-HTTP"), "Idempotency-Key": "chu-http-batch-1"}
    workers.start(processes=2, threads=2)
    data = zip_folder(batch_500)
    answer = _post_zip(base, data, headers)
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batch"]
    wait_until_final(runtime, batch_id, timeout=300)
    _assert_exactly_as_expected(runtime, batch_id, batch_500)
    # The uploaded zip was every document's inbox object: the last item to finish deletes it (just after its commit).
    deadline = time.monotonic() + 30
    while list(runtime.store.list_keys("inbox/")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(runtime.store.list_keys("inbox/"))
    status = httpx.get(base + answer.json()["status_url"], headers=headers, timeout=30).json()
    assert len(status["items"]) == answer.json()["total"] and all(i["state"] in ("indexed", "rejected") for i in status["items"])

    before = _snapshot(runtime)
    again = _post_zip(base, data, headers)
    assert (again.status_code, again.json()["batch"], again.headers.get("idempotent-replayed")) == (202, batch_id, "true")
    time.sleep(2)  # give the workers a chance to (wrongly) do something
    assert _snapshot(runtime) == before


def test_a_lab_pushing_a_feed_gets_403(settings, api, tmp_path):
    base = api()
    feed = tmp_path / "feed.csv"
    write_feed(feed, 20, patients=5, seed=1)
    headers = {**_key(settings, "lab:BIO-HTTP"), "Content-Type": "text/csv"}
    answer = httpx.post(base + "/v1/ingest/feeds", content=feed.read_bytes(), headers=headers, timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (403, "source_not_allowed")


def test_each_hostile_archive_is_rejected_with_its_reason_and_nothing_is_stored(settings, runtime, api):
    base = api(archive_max_uncompressed_bytes=ARCHIVE_LIMIT)
    headers = _key(settings, "hospital:CHU-HOSTILE")
    for reason, data in sorted(hostile_archives(ARCHIVE_LIMIT).items()):
        answer = _post_zip(base, data, headers)
        assert (answer.status_code, answer.json()["code"]) == (422, reason), reason
    assert _snapshot(runtime)["items"] == 0
    assert not list(runtime.store.list_keys())


def test_a_full_queue_answers_429_and_the_upload_succeeds_after_waiting(settings, runtime, workers, api, tmp_path):
    base = api(ingest_max_queued=10, ingest_retry_after_seconds=1)
    headers = _key(settings, "hospital:CHU-BUSY")
    first, second = tmp_path / "first", tmp_path / "second"
    generate_samples(first, patients=4, documents=30, seed=31)
    generate_samples(second, patients=4, documents=30, seed=32)
    assert _post_zip(base, zip_folder(first), headers).status_code == 202  # no worker yet: 30 documents wait
    busy = _post_zip(base, zip_folder(second), {**headers, "Idempotency-Key": "second-batch"})
    assert (busy.status_code, busy.json()["code"], busy.headers["retry-after"]) == (429, "queue_full", "1")

    workers.start(processes=2, threads=2)
    deadline = time.monotonic() + 180
    while busy.status_code == 429 and time.monotonic() < deadline:
        time.sleep(int(busy.headers["retry-after"]))
        busy = _post_zip(base, zip_folder(second), {**headers, "Idempotency-Key": "second-batch"})
    assert busy.status_code == 202, busy.text
    wait_until_final(runtime, busy.json()["batch"], timeout=180)


def test_dmp_ingest_with_api_sends_a_folder_as_multipart_and_it_ends_as_expected(settings, runtime, workers, api, tmp_path):
    base = api()
    key = _key(settings, "lab:BIO-CLIENT")["Authorization"].removeprefix("Bearer ")
    folder = tmp_path / "batch"
    generate_samples(folder, patients=5, documents=60, seed=41)
    workers.start(processes=2, threads=2)
    command = [DMP, "ingest", str(folder), "--source", "lab:BIO-CLIENT", "--api", base, "--json", "--wait"]
    result = subprocess.run(command, env={**os.environ, "DMP_API_KEY": key}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    _assert_exactly_as_expected(runtime, summary["batch"], folder)
