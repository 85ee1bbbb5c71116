"""Readiness and metrics on real services: `/v1/ready` names the broker while Redis is down, and
`/metrics` reads the queue from Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline.core.storage import open_store

pytestmark = pytest.mark.distributed


def test_ready_is_503_naming_the_broker_while_redis_is_stopped_and_200_once_it_is_back(settings, redis_server):
    open_store(settings).ensure_ready()  # the bucket, as the deployment's init step creates it
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/ready").status_code == 200
        redis_server.kill()
        down = client.get("/v1/ready")
        redis_server.start()
        back = client.get("/v1/ready")
    assert down.status_code == 503
    assert down.json()["failing"] == ["broker"] and down.json()["checks"]["broker"] != "ok"
    assert settings.broker_url not in down.text and str(redis_server.port) not in down.text
    assert back.status_code == 200 and back.json()["checks"] == dict.fromkeys(("database", "broker", "store", "keys"), "ok")


def test_metrics_show_the_depth_of_the_document_queue_read_from_redis(settings):
    from pipeline.workers.wiring import wire

    wiring = wire(settings)
    for _ in range(3):
        wiring.actors.process_document.send("no-such-item")  # nobody consumes: they wait in Redis
    wiring.broker.close()
    with TestClient(create_app(settings)) as client:
        text = client.get("/metrics").text
    assert f'dmp_queue_messages{{queue="{settings.queue_name}"}} 3.0' in text
    assert "dmp_queue_oldest_message_age_seconds" in text
