"""The hostile corpus through real worker processes: each file ends with its reason, no worker dies."""

from __future__ import annotations

import time

import psutil
import pytest

from pipeline.runtime import Runtime
from pipeline.status import batch_status
from tests.distributed.conftest import ingest, wait_until_final
from tests.hostile.corpus import PAGE_LIMIT, build_hostile_batch

pytestmark = pytest.mark.distributed
MAX_FILE = 2 * 1024 * 1024


def _worker_processes(root_pid: int, timeout: float = 30) -> set[psutil.Process]:
    """dramatiq's worker processes (direct children of `dmp worker`) once they are up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [p for p in psutil.Process(root_pid).children() if "dmp" in " ".join(p.cmdline())]
        if len(children) >= 2:
            return set(children)
        time.sleep(0.2)
    raise TimeoutError("worker processes did not start")


def test_every_hostile_file_ends_with_its_reason_and_no_worker_dies(settings, workers, tmp_path):
    hostile = settings.model_copy(update={"pdf_max_pages": PAGE_LIMIT, "max_file_bytes": MAX_FILE, "validation_timeout_seconds": 20})
    workers.settings = hostile
    cases = build_hostile_batch(tmp_path / "hostile", max_file_bytes=MAX_FILE)
    workers.start(processes=2, threads=2)
    before = _worker_processes(workers.process.pid)

    summary = ingest(hostile, tmp_path / "hostile", source="hospital:HOSTILE")
    rt = Runtime.from_settings(hostile)
    wait_until_final(rt, summary["batch"], timeout=180)
    with rt.sessions() as session:
        status = batch_status(session, summary["batch"])
    rt.close()

    outcomes = {item["file"]: (item["state"], item["reason"] or "") for item in status["items"]}
    assert outcomes == {case.file: (case.expected_state, case.expected_reason) for case in cases}
    assert all(item["message"] for item in status["items"] if item["state"] == "rejected")
    assert all(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in before)
    assert _worker_processes(workers.process.pid) == before
