"""Metrics read at scrape time (`GET /metrics`): queue depth and the age of its oldest message from
the broker, the index's backlog (unfinished and stuck items, outbox, notifications by status) and
when the periodic jobs last ran. Nothing here is counted in a hot path: a scrape pays for it.

A source that does not answer is skipped for that scrape (and `dmp_scrape_errors` says which), so
the metrics of the others still arrive when the broker or the index is down.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pipeline.operations import backlog

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
REDIS_NAMESPACE = "dramatiq"  # dramatiq's RedisBroker default


class BrokerReader:
    """The depth of each queue and the age of its oldest message, straight from dramatiq's Redis keys
    (`dramatiq:<queue>` lists message ids in order, `dramatiq:<queue>.msgs` holds the messages)."""

    def __init__(self, url: str, queues: list[str], timeout: float = 2.0) -> None:
        import redis

        self.queues = queues
        self.client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)

    def depths(self, now_ms: float) -> dict[str, tuple[int, float]]:
        """{queue: (messages waiting, age in seconds of the oldest, 0 when empty)}."""
        answer = {}
        for queue in self.queues:
            key = f"{REDIS_NAMESPACE}:{queue}"
            depth = self.client.llen(key)
            age = 0.0
            oldest = self.client.lindex(key, 0)
            if oldest is not None:
                raw = self.client.hget(f"{key}.msgs", oldest)
                if raw is not None:
                    age = max(0.0, (now_ms - json.loads(raw)["message_timestamp"]) / 1000)
            answer[queue] = (depth, age)
        return answer

    def close(self) -> None:
        self.client.close()


class ScrapeCollector(Collector):
    """A prometheus-client collector over the index and the broker of one Runtime."""

    def __init__(self, rt: Runtime, broker: BrokerReader | None) -> None:
        self.rt, self.broker = rt, broker

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily("dmp_scrape_errors", "1 when a source of scrape-time metrics did not answer.", labels=["source"])
        try:
            yield from self._from_index()
            errors.add_metric(["database"], 0)
        except Exception as failure:  # the driver's text can quote the URL: only the type is logged
            log.warning("metrics: the index did not answer (%s)", type(failure).__name__)
            errors.add_metric(["database"], 1)
        if self.broker is not None:
            try:
                yield from self._from_broker()
                errors.add_metric(["broker"], 0)
            except Exception as failure:
                log.warning("metrics: the broker did not answer (%s)", type(failure).__name__)
                errors.add_metric(["broker"], 1)
        yield errors

    def _from_broker(self) -> Iterator[Metric]:
        assert self.broker is not None
        depth = GaugeMetricFamily("dmp_queue_messages", "Messages waiting in a broker queue.", labels=["queue"])
        age = GaugeMetricFamily("dmp_queue_oldest_message_age_seconds", "Age of the oldest message waiting in a queue.", labels=["queue"])
        for queue, (count, seconds) in self.broker.depths(time.time() * 1000).items():
            depth.add_metric([queue], count)
            age.add_metric([queue], seconds)
        yield depth
        yield age

    def _from_index(self) -> Iterator[Metric]:
        settings = self.rt.settings
        with self.rt.sessions() as session:
            unfinished = backlog.unfinished_items(session)
            stuck = backlog.stuck_items_count(session, dt.timedelta(seconds=settings.stuck_after_seconds))
            outbox = backlog.outbox_pending(session)
            notifications = backlog.notifications_by_status(session)
            retention = backlog.last_job_run(session, backlog.RETENTION_JOB)
            verified_ok = backlog.last_job_run(session, backlog.AUDIT_VERIFY_OK)
            verified_broken = backlog.last_job_run(session, backlog.AUDIT_VERIFY_BROKEN)
        items = GaugeMetricFamily("dmp_items", "Batch items not yet final, by state.", labels=["state"])
        for state in ("queued", "processing"):
            items.add_metric([state], unfinished.get(state, 0))
        yield items
        yield GaugeMetricFamily("dmp_items_stuck", "Items processing for longer than DMP_STUCK_AFTER_SECONDS.", value=stuck)
        yield GaugeMetricFamily("dmp_outbox_pending", "Notification events not yet composed into messages.", value=outbox)
        by_status = GaugeMetricFamily("dmp_notifications", "Notifications kept, by status.", labels=["status"])
        for status in ("pending", "sending", "sent", "failed"):
            by_status.add_metric([status], notifications.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            "dmp_retention_last_success_timestamp_seconds", "When retention last ran to the end (0: never).", value=_epoch(retention)
        )
        last_verify = max(filter(None, (verified_ok, verified_broken)), default=None)
        yield GaugeMetricFamily(
            "dmp_audit_verify_last_timestamp_seconds", "When `dmp audit verify` last ran (0: never).", value=_epoch(last_verify)
        )
        broken = verified_broken is not None and (verified_ok is None or verified_broken >= verified_ok)
        yield GaugeMetricFamily("dmp_audit_chain_broken", "1 when the last `dmp audit verify` found a broken link.", value=int(broken))


def _epoch(moment: dt.datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def broker_reader(rt: Runtime, queues: list[str]) -> BrokerReader | None:
    """The reader of `queues`, None in embedded mode (the StubBroker lives in another process)."""
    if rt.settings.embedded_broker or not rt.settings.broker_url:
        return None
    return BrokerReader(rt.settings.broker_url, queues)
