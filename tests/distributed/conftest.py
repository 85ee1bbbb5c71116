"""Distributed mode on real servers: a throwaway redis-server, a fresh PostgreSQL database and an
S3 endpoint over HTTP (moto_server on a free port, or DMP_TEST_S3_ENDPOINT for a real MinIO)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.services import MotoServer, PostgresDatabase, RedisServer, dmp_environment
from pipeline.core.keys import load_key_file
from pipeline.core.settings import Settings
from pipeline.index.db import make_engine, upgrade
from pipeline.runtime import Runtime

DMP = str(Path(sys.executable).with_name("dmp"))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer | None]:
    if os.environ.get("DMP_TEST_S3_ENDPOINT"):
        yield None
        return
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server) -> str:
    return s3_server.endpoint if s3_server else os.environ["DMP_TEST_S3_ENDPOINT"]


@pytest.fixture
def moto(s3_server) -> MotoServer:
    if s3_server is None:
        pytest.skip("pausing the S3 endpoint needs the suite's own moto_server")
    return s3_server


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres() -> Iterator[PostgresDatabase]:
    database = PostgresDatabase()
    database.start()
    yield database
    database.stop()


@pytest.fixture
def settings(tmp_path, redis_server, postgres, s3_endpoint) -> Settings:
    access = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
    configured = Settings(
        home=tmp_path / "home",
        broker_url=redis_server.url,
        database_url=postgres.url,
        storage_url=f"s3://dmp-test-{uuid.uuid4().hex[:10]}",
        s3_endpoint=s3_endpoint,
        s3_access_key=access,
        s3_secret_key=secret,
        key_file=tmp_path / "keys.json",
        # Fast failure detection and short backoffs so outages resolve within a test.
        broker_heartbeat_timeout_ms=3000,
        broker_maintenance_chance=1_000_000,
        min_backoff_ms=200,
        max_backoff_ms=2000,
        max_retries=30,
        s3_timeout_seconds=2,
    )
    load_key_file(configured.resolved_key_file(), create=True)
    engine = make_engine(configured.resolved_database_url())
    upgrade(engine)
    engine.dispose()
    return configured


class Workers:
    """`dmp worker` as a separate process group, killable like a crashed machine."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen | None = None
        # The workers' own temp folder, as on a host: what they leave there stays checkable.
        self.tmpdir = log.with_name("worker-tmp")
        self.tmpdir.mkdir(exist_ok=True)

    def start(self, processes: int = 2, threads: int = 2) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [DMP, "worker", "--processes", str(processes), "--threads", str(threads)],
            env={**dmp_environment(self.settings), "TMPDIR": str(self.tmpdir)},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workers(settings, tmp_path) -> Iterator[Workers]:
    group = Workers(settings, tmp_path / "worker.log")
    yield group
    group.stop()


def dmp(settings: Settings, *args: str) -> str:
    result = subprocess.run([DMP, *args], env=dmp_environment(settings), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ingest(settings: Settings, batch: Path, source: str = "hospital:CHU-DIST") -> dict:
    return json.loads(dmp(settings, "ingest", str(batch), "--source", source, "--json").strip().splitlines()[-1])


def wait_until_final(rt: Runtime, batch_id: str, timeout: float, at_least: int | None = None) -> dict[str, int]:
    """Poll the index until every item of the batch is final (or `at_least` are), return counts."""
    from pipeline.status import counts

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            now = counts(session, batch_id)
        if (at_least is not None and now.done >= at_least) or now.done == now.total:
            return {"total": now.total, "indexed": now.indexed, "rejected": now.rejected}
        time.sleep(0.25)
    raise TimeoutError(f"batch {batch_id} not final after {timeout}s: {now}")
