"""The worker processes' metrics over HTTP (DMP_WORKER_METRICS_PORT): the parent of `dmp worker`
serves what its children count.

Each child writes its counters to files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode, chosen when the child imports prometheus-client, hence set before they start);
the parent adds them up at each scrape, so a replaced child's counts are kept and nothing needs a
port per process. The queue depth and the backlog are the API's to serve (`GET /metrics`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """The folder the children write their counters to: PROMETHEUS_MULTIPROC_DIR (emptied of an earlier
    run's files, whose counts would otherwise be added again), or a fresh one, set in the environment."""
    configured = os.environ.get(MULTIPROC_ENV)
    folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="dmp-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def serve_worker_metrics(host: str, port: int) -> None:
    """Serve the children's metrics at http://host:port/metrics from a daemon thread of this process."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
