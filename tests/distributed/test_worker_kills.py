"""Worker processes killed again and again mid-batch (an OOM killer, a crashing host): every good
document still ends indexed, and nothing of the documents stays on the workers' local disk."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from pipeline.runtime import Runtime
from pipeline.status import counts
from tests.distributed.conftest import Workers, ingest
from tests.distributed.test_pipeline_distributed import _assert_exactly_as_expected

pytestmark = pytest.mark.distributed

KILLS = 8


@pytest.fixture
def batch(tmp_path) -> Path:
    from pipeline.samples import generate_samples

    out = tmp_path / "batch"
    generate_samples(out, patients=12, documents=100, seed=23)  # a kill every 10 documents
    return out


@pytest.fixture
def runtime(settings):
    rt = Runtime.from_settings(settings)
    yield rt
    rt.close()


def _done(rt: Runtime, batch_id: str) -> tuple[int, int]:
    with rt.sessions() as session:
        now = counts(session, batch_id)
    return now.done, now.total


def _keep_running(workers: Workers) -> None:
    """Restart the group if its parent gave up after losing a child (the supervisor may instead
    replace the child itself: then there is nothing to do)."""
    assert workers.process is not None
    if workers.process.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(workers.process.pid, signal.SIGKILL)  # whatever of the old group remains
        workers.start(processes=2, threads=2)


def _wait(rt: Runtime, batch_id: str, workers: Workers, at_least: int | None, timeout: float = 300) -> None:
    """Until `at_least` items (or all) are final; a killed message comes back after the broker's
    heartbeat timeout, so the wait is generous."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _keep_running(workers)
        done, total = _done(rt, batch_id)
        if done >= (total if at_least is None else at_least):
            return
        time.sleep(0.2)
    raise TimeoutError(f"batch {batch_id}: {_done(rt, batch_id)} after {timeout}s")


def _kill_one_worker_process(workers: Workers) -> None:
    assert workers.process is not None
    children = psutil.Process(workers.process.pid).children()
    if children:
        children[-1].send_signal(signal.SIGKILL)


def _files_left(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if not path.is_dir()]


def test_repeated_kills_of_a_worker_process_lose_no_document_and_leave_no_plaintext(settings, runtime, workers, batch):
    # A killed process's claims come back once their lease lapses: a short lease keeps eight kills quick.
    workers.settings = settings = settings.model_copy(update={"claim_lease_seconds": 3.0})
    summary = ingest(settings, batch)
    workers.start(processes=2, threads=2)
    for kill in range(1, KILLS + 1):
        _wait(runtime, summary["batch"], workers, at_least=kill * summary["total"] // (KILLS + 2))
        _kill_one_worker_process(workers)
    _wait(runtime, summary["batch"], workers, at_least=None)
    _assert_exactly_as_expected(runtime, summary["batch"], batch)
    assert _files_left(workers.tmpdir) == []
