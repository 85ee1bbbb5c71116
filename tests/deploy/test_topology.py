"""The compose topology as local processes on loopback: real redis-server, a PostgreSQL database
and an S3 endpoint (moto_server), then the stack's own services as compose runs them, through the
image's entry point with the secrets in files: init, the API, two workers and the scheduler.

A hospital sends a zip over HTTP, the patient reads the document, the counters move in `/metrics`,
and `/v1/ready` turns 503 naming the broker while Redis is stopped, 200 once it is back."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from infra.services import PostgresDatabase, RedisServer, free_port
from pipeline.core.clock import PARIS
from pipeline.core.settings import Settings
from pipeline.index.models import Document
from pipeline.retention import RUN_AT
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.conftest import zip_folder
from tests.distributed.conftest import wait_until_final

pytestmark = pytest.mark.distributed
ENTRYPOINT = str(Path(__file__).resolve().parents[2] / "infra" / "dmp-entrypoint")
SOURCE = "hospital:CHU-TOPOLOGY"


@dataclass
class Stack:
    """The stack's processes, each started like its compose service (`dmp-entrypoint ARGS`)."""

    root: Path
    redis: RedisServer
    env: dict[str, str]
    settings: Settings
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str) -> str:
        result = subprocess.run([ENTRYPOINT, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, name: str, *args: str, **env: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.processes.append(
            subprocess.Popen([ENTRYPOINT, *args], env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _secret(root: Path, name: str, value: str) -> str:
    path = root / "secrets" / name
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def stack(tmp_path, s3_endpoint) -> Iterator[Stack]:
    redis, database = RedisServer(tmp_path / "redis"), PostgresDatabase()
    redis.start()
    database.start()
    settings = Settings(
        home=tmp_path / "home",
        broker_url=redis.url,
        database_url=database.url,
        storage_url=f"s3://dmp-topology-{uuid.uuid4().hex[:8]}",
        s3_endpoint=s3_endpoint,
        s3_access_key="testing",
        s3_secret_key="testing",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DMP_HOME=str(settings.home),
        DMP_STORAGE_URL=str(settings.storage_url),
        DMP_S3_ENDPOINT=s3_endpoint,
        DMP_DATABASE_URL_FILE=_secret(tmp_path, "database_url", database.url),
        DMP_BROKER_URL_FILE=_secret(tmp_path, "broker_url", redis.url),
        DMP_S3_ACCESS_KEY_FILE=_secret(tmp_path, "s3_access_key", "testing"),
        DMP_S3_SECRET_KEY_FILE=_secret(tmp_path, "s3_secret_key", "testing"),
    )
    topology = Stack(tmp_path, redis, env, settings)
    yield topology
    topology.stop()
    redis.stop()
    database.stop()


def _wait_for(url: str, stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in stack.processes), "a service exited: see its log under " + str(stack.root)
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200")


def _samples(metrics_text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, frozenset], float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def test_the_stack_takes_a_zip_over_http_serves_it_to_the_patient_and_reports_its_dependencies(stack, tmp_path):
    stack.run("init")
    stack.run("init")  # a restarted stack runs init again: nothing changes
    key = stack.run("sources", "add", SOURCE).strip()
    api_port, scheduler_port, worker_ports = free_port(), free_port(), [free_port(), free_port()]
    stack.start("api", "api", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "2", "--no-access-log")
    for number, port in enumerate(worker_ports, 1):
        stack.start(f"worker-{number}", "worker", "--processes", "1", "--threads", "2", DMP_WORKER_METRICS_PORT=str(port))
    stack.start("scheduler", "scheduler", "--metrics-port", str(scheduler_port))
    base = f"http://127.0.0.1:{api_port}"
    _wait_for(base + "/v1/ready", stack)
    before = _samples(httpx.get(base + "/metrics", timeout=10).text)

    generate_samples(tmp_path / "batch", patients=1, documents=3, seed=18, bad=False)
    sent = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "batch").iterdir() if p.suffix != ".csv"}
    answer = httpx.post(
        base + "/v1/ingest/batches",
        content=zip_folder(tmp_path / "batch"),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"},
        timeout=60,
    )
    assert answer.status_code == 202, answer.text
    rt = Runtime.from_settings(stack.settings)
    try:
        assert wait_until_final(rt, answer.json()["batch"], timeout=120)["indexed"] == 3
        with rt.sessions() as session:
            patient_id, document_id = session.execute(select(Document.patient_id, Document.id).limit(1)).one()
    finally:
        rt.close()

    token = stack.run("token", "--sub", patient_id, "--kind", "patient").strip()
    content = httpx.get(
        f"{base}/v1/patients/{patient_id}/documents/{document_id}/content", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() in sent

    after = _samples(httpx.get(base + "/metrics", timeout=10).text)
    assert _total(after, "dmp_documents_received_total") >= _total(before, "dmp_documents_received_total") + 3
    assert _total(after, "dmp_api_requests_total") > _total(before, "dmp_api_requests_total")
    indexed = [
        _total(_samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text), "dmp_documents_indexed_total")
        for port in worker_ports
    ]
    assert sum(indexed) == 3
    _wait_for(f"http://127.0.0.1:{scheduler_port}/metrics", stack)
    last_retention = "dmp_retention_last_success_timestamp_seconds"
    if dt.datetime.now(PARIS).time() >= RUN_AT:
        # Past 03:00 Paris with no run recorded today, the scheduler runs retention at once (or at 03:00, started before).
        deadline = time.monotonic() + 60
        while not _total(_samples(httpx.get(base + "/metrics", timeout=10).text), last_retention):
            assert time.monotonic() < deadline, "the scheduler's retention run never ended"
            time.sleep(0.5)
    else:  # before 03:00 Paris today's run waits for 03:00 (tests/test_scheduler.py runs both cases on a clock)
        assert _total(_samples(httpx.get(base + "/metrics", timeout=10).text), last_retention) == 0

    stack.redis.kill()
    down = httpx.get(base + "/v1/ready", timeout=30)
    stack.redis.start()
    assert down.status_code == 503 and down.json()["failing"] == ["broker"]
    _wait_for(base + "/v1/ready", stack, timeout=30)
