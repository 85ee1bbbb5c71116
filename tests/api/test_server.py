"""`dmp api`: the served API, one or several worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import psutil
import pytest

from infra.services import dmp_environment, free_port
from pipeline.core.settings import Settings
from pipeline.runtime import Runtime

pytestmark = pytest.mark.slow  # starts dmp api processes

DMP = str(Path(sys.executable).with_name("dmp"))


def _wait_healthy(base: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited"
        try:
            if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError("the API did not answer")


@pytest.mark.parametrize("workers", [1, 2])
def test_dmp_api_serves_and_stops_cleanly_on_sigterm(tmp_path, workers):
    settings = Settings(home=tmp_path / "home")
    Runtime.from_settings(settings, prepare=True).close()
    port = free_port()
    command = [DMP, "api", "--port", str(port), "--workers", str(workers), "--no-access-log"]
    server = subprocess.Popen(command, env=dmp_environment(settings), stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server)
        children = psutil.Process(server.pid).children(recursive=True)
        assert len([c for c in children if "spawn_main" in " ".join(c.cmdline())]) == (workers if workers > 1 else 0)
        # Many connections at once: every one is answered (each worker has its own SO_REUSEPORT socket).
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=16)) as client:
            assert all(client.get("/v1/health").status_code == 200 for _ in range(64))
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (single process)
        assert server.wait(timeout=40) in (0, -signal.SIGTERM)
        _, alive = psutil.wait_procs(children, timeout=15)  # workers, and multiprocessing's resource tracker after them
        assert not alive
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


def test_dmp_api_prints_where_it_serves_and_its_documentation(tmp_path):
    settings = Settings(home=tmp_path / "home")
    port = free_port()
    command = [DMP, "api", "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(
        command, env=dmp_environment(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, server)
        assert httpx.get(base + "/docs", timeout=10).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        out, _ = server.communicate(timeout=40)
    assert f"{base} " in out.decode() and f"{base}/docs" in out.decode()
