"""Broker set-up: StubBroker in embedded mode, Redis in distributed mode; same actors either way."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from pipeline.core.settings import Settings


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker named by DMP_BROKER_URL (Redis), or an in-process StubBroker when unset."""
    if settings.embedded_broker:
        broker: dramatiq.Broker = StubBroker()
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(
            url=settings.broker_url,
            heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
            maintenance_chance=settings.broker_maintenance_chance,
        )
    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            middleware.max_retries = settings.max_retries
            middleware.min_backoff = settings.min_backoff_ms
            middleware.max_backoff = settings.max_backoff_ms
    dramatiq.set_broker(broker)
    return broker
