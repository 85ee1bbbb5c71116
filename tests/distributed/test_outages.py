"""A service blinks in the middle of a batch: every good document still ends indexed, every bad one
with its own reason, with no operator step.

The retry budget is cut to one retry within half a second, so each outage below lasts far longer
than every retry, and the broker's own recovery of a dead worker's messages is turned off (a
heartbeat timeout of ten minutes, no maintenance pass), so what brings work back is ours: waiting
out outages in place, claim leases and the recovery sweep (pipeline/core/outage.py,
pipeline/workers/recovery.py). Each test runs a real batch through two worker processes, so each
takes tens of seconds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from infra.services import PostgresCluster, RedisServer
from pipeline.core.settings import Settings
from pipeline.index.db import make_engine, upgrade
from pipeline.runtime import Runtime
from pipeline.workers.supervisor import MAX_RESTART_DELAY
from tests.distributed.conftest import Workers, ingest, wait_until_final
from tests.distributed.test_pipeline_distributed import _assert_exactly_as_expected

pytestmark = pytest.mark.distributed
OUTAGE_SECONDS = 4  # the whole retry budget is under a second


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    from pipeline.samples import generate_samples

    out = tmp_path_factory.mktemp("outages") / "batch"
    generate_samples(out, patients=12, documents=90, seed=5)
    return out


def _short_budget(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "max_retries": 1,
            "min_backoff_ms": 100,
            "max_backoff_ms": 500,
            "claim_lease_seconds": 3.0,
            "broker_heartbeat_timeout_ms": 600_000,
            "broker_maintenance_chance": 0,
            **changes,
        }
    )


def _started(settings: Settings, log: Path, batch: Path) -> tuple[Workers, Runtime, str]:
    batch_id = ingest(settings, batch)["batch"]
    workers = Workers(settings, log)
    workers.start(processes=2, threads=2)
    rt = Runtime.from_settings(settings)
    wait_until_final(rt, batch_id, timeout=180, at_least=10)
    return workers, rt, batch_id


@pytest.fixture
def cluster():
    server = PostgresCluster()
    server.init()
    yield server
    server.destroy()


def test_a_postgresql_outage_longer_than_every_retry_loses_no_document(settings, cluster, tmp_path, batch):
    configured = _short_budget(settings, database_url=cluster.url)
    engine = make_engine(cluster.url)
    upgrade(engine)
    engine.dispose()
    workers, rt, batch_id = _started(configured, tmp_path / "worker.log", batch)
    try:
        cluster.stop()
        time.sleep(OUTAGE_SECONDS)
        cluster.start()
        wait_until_final(rt, batch_id, timeout=240)
        _assert_exactly_as_expected(rt, batch_id, batch)
    finally:
        workers.stop()
        rt.close()
    log = workers.log.read_text()
    assert "database unavailable" in log and "database answers again" in log


def test_a_redis_restart_that_loses_every_message_loses_no_document(settings, tmp_path, batch):
    volatile = RedisServer(tmp_path / "volatile-redis", persistent=False)
    volatile.start()
    configured = _short_budget(settings, broker_url=volatile.url)
    workers, rt, batch_id = _started(configured, tmp_path / "worker.log", batch)
    try:
        volatile.kill()
        time.sleep(1)
        volatile.start()  # empty: the queued messages are gone
        wait_until_final(rt, batch_id, timeout=240)
        _assert_exactly_as_expected(rt, batch_id, batch)
    finally:
        workers.stop()
        rt.close()
        volatile.stop()
    assert "their messages were lost" in workers.log.read_text()


def _live_children(workers: Workers) -> list[psutil.Process]:
    """The supervisor's worker processes that are running (not killed and waiting to be reaped)."""
    deadline = time.monotonic() + MAX_RESTART_DELAY + 10
    while True:
        assert workers.process is not None
        live = [c for c in psutil.Process(workers.process.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        if live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def _kill(process: psutil.Process) -> None:
    """SIGKILL `process` and wait until it is dead: a signal is not taken at once, and a dying process still
    listed as running could be picked again by the next kill, one death for two kills."""
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {process.pid} still alive 10 s after SIGKILL")


def _wait_for_replacements(workers: Workers) -> None:
    """A process killed soon after its start is replaced after a short delay (supervisor.py); the batch
    may end within it."""
    deadline = time.monotonic() + MAX_RESTART_DELAY + 10
    assert workers.process is not None
    while len(_live_children(workers)) != 2 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_worker_processes_killed_again_and_again_are_replaced_and_their_work_comes_back(settings, tmp_path, batch):
    configured = _short_budget(settings)
    workers, rt, batch_id = _started(configured, tmp_path / "worker.log", batch)
    kills = 4
    try:
        for kill in range(kills):
            wait_until_final(rt, batch_id, timeout=180, at_least=10 + 15 * (kill + 1))
            # Each kill hits a live process: two thresholds may pass within one of the supervisor's
            # polls, and a process killed a moment ago stays listed (a zombie) until it is reaped.
            children = _live_children(workers)
            _kill(children[kill % len(children)])
        wait_until_final(rt, batch_id, timeout=240)
        _assert_exactly_as_expected(rt, batch_id, batch)
        assert workers.process.poll() is None  # the parent kept running
        _wait_for_replacements(workers)
        assert len(psutil.Process(workers.process.pid).children()) == 2
    finally:
        workers.stop()
        rt.close()
    log = workers.log.read_text()
    assert log.count("died (killed by SIGKILL)") == kills
