"""The process's Prometheus metrics (names prefixed `dmp_`), updated where the work happens.

Labels carry vocabularies only (route templates, status codes, source kinds, reason codes, stage
names): never a patient, document, batch or person id, so a scrape reveals no one and the series
stay few. What lives elsewhere (queue depth, outbox backlog, the last retention run) is read at
scrape time by `pipeline.operations.scrape`, not counted here.

Several processes (dramatiq worker processes, several API processes) share their counters through
prometheus-client's multiprocess mode: set PROMETHEUS_MULTIPROC_DIR to an empty folder before the
processes start (`dmp worker` does it for its children when DMP_WORKER_METRICS_PORT is set).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Latency buckets for HTTP requests and pipeline stages: a few ms up to a large document's minute.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Stage(StrEnum):
    """The pipeline stages timed by `dmp_stage_duration_seconds`."""

    VALIDATE = "validate"
    CLASSIFY = "classify"
    SEAL = "seal"
    INDEX = "index"
    FEED_CHUNK = "feed_chunk"
    NOTIFY = "notify"


api_requests = Counter("dmp_api_requests", "HTTP requests answered, by route template, method and status.", ["route", "method", "status"])
api_latency = Histogram(
    "dmp_api_request_duration_seconds", "HTTP request latency by route template and method.", ["route", "method"], buckets=SECONDS_BUCKETS
)
documents_received = Counter("dmp_documents_received", "Documents (batch items) and feed lines accepted for processing.", ["source_kind"])
documents_indexed = Counter("dmp_documents_indexed", "Documents indexed.", ["source_kind"])
documents_rejected = Counter("dmp_documents_rejected", "Documents and feed lines rejected, by reason code.", ["source_kind", "reason"])
stage_duration = Histogram("dmp_stage_duration_seconds", "Time spent in a pipeline stage.", ["stage"], buckets=SECONDS_BUCKETS)
audit_appends = Counter("dmp_audit_appends", "Entries appended to the audit chain, by outcome.", ["outcome"])
notifications_sent = Counter("dmp_notifications_sent", "Notification send attempts, by channel and result.", ["channel", "result"])
retention_runs = Counter("dmp_retention_runs", "Retention runs, by result (`success` or `failure`).", ["result"])
# `success`: a verdict recorded, intact or broken (dmp_audit_chain_broken says which); `failure`: none.
audit_verify_runs = Counter("dmp_audit_verify_runs", "Scheduled whole-log audit verifications, by result.", ["result"])


def source_kind(source: str) -> str:
    """The kind part of a source name (`hospital:CHU-1` -> `hospital`): the id never becomes a label."""
    return source.partition(":")[0] or "unknown"


@contextmanager
def timed(stage: Stage) -> Iterator[None]:
    """Observe the time spent in the block as one `stage` duration (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        stage_duration.labels(stage.value).observe(time.perf_counter() - started)


def observe_each(stage: Stage, seconds: float, count: int) -> None:
    """Observe `count` durations of `seconds` each: a stage run once for several documents, counted per document."""
    for _ in range(count):
        stage_duration.labels(stage.value).observe(seconds)


class _Together(Collector):
    """Several collectors (or registries) exposed as one."""

    def __init__(self, sources: list[Collector]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def exposition(*extra: Collector) -> tuple[bytes, str]:
    """The Prometheus text of this process's metrics (of every process sharing PROMETHEUS_MULTIPROC_DIR
    when it is set) followed by the `extra` collectors'; with its content type."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        sources: list[Collector] = [registry, *extra]
    else:
        sources = [REGISTRY, *extra]
    return generate_latest(_Together(sources)), CONTENT_TYPE_LATEST
