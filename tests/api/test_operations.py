"""Readiness and metrics of an embedded API process: `/v1/ready` and `/metrics` (README "Operate")."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings
from pipeline.runtime import Runtime
from tests.conftest import index_batch

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INS_LIKE = re.compile(r"\d{13,15}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An embedded deployment with one batch indexed through the pipeline, and an API client."""
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("ops")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=3, documents=20, seed=5, bad=True)  # one of each fault
    rt = Runtime.from_settings(settings, prepare=True)
    documents = index_batch(rt, root / "batch", "hospital:CHU-OPS")
    with TestClient(create_app(settings)) as client:
        yield settings, client, documents
    rt.close()


def _samples(text: str, name: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    return [sample for family in text_string_to_metric_families(text) for sample in family.samples if sample.name == name]


def _label_values(text: str) -> list[str]:
    return [value for line in text.splitlines() if not line.startswith("#") for value in re.findall(r'="([^"]*)"', line)]


def test_ready_answers_200_naming_each_dependency_checked(world):
    _, client, _ = world
    answer = client.get("/v1/ready")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "store": "ok", "keys": "ok"}}


def test_ready_is_503_naming_the_store_when_its_folder_is_gone(tmp_path):
    settings = Settings(home=tmp_path / "home")
    with TestClient(create_app(settings)) as client:
        root = client.app.state.runtime.store.root
        root.rename(root.with_name("moved"))
        answer = client.get("/v1/ready")
    assert answer.status_code == 503
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "not_ready" and problem["failing"] == ["store"]
    assert str(tmp_path) not in answer.text


def test_metrics_are_prometheus_text_prefixed_dmp(world):
    _, client, _ = world
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in answer.text.splitlines() if line and not line.startswith("#")}
    ours = {name for name in names if name.startswith("dmp_")}
    for expected in ("dmp_documents_indexed_total", "dmp_documents_rejected_total", "dmp_stage_duration_seconds_count", "dmp_items"):
        assert expected in ours


def test_api_requests_are_counted_by_route_template_not_by_path(world):
    settings, client, documents = world
    document = documents[0]
    token = mint_token(settings, document.patient_id, "patient")
    client.get(f"/v1/patients/{document.patient_id}/documents/{document.id}", headers={"Authorization": f"Bearer {token}"})
    text = client.get("/metrics").text
    counted = [s.labels for s in _samples(text, "dmp_api_requests_total") if s.labels["route"].endswith("{document_id}")]
    assert {"route": "/v1/patients/{patient_id}/documents/{document_id}", "method": "GET", "status": "200"} in counted
    assert document.id not in text and document.patient_id not in text


def test_no_metric_label_carries_an_id_or_an_ins(world):
    _, client, documents = world
    client.get("/v1/no/such/path/" + documents[0].id)
    values = _label_values(client.get("/metrics").text)
    assert values, "the scrape has labelled series"
    assert [v for v in values if UUID.search(v) or INS_LIKE.search(v)] == []
    assert not any("CHU-OPS" in v for v in values)  # the source's id: only its kind is a label


def test_a_request_id_sent_by_the_caller_is_echoed(world):
    _, client, _ = world
    assert client.get("/v1/health", headers={"X-Request-ID": "lb-1234.abc"}).headers["x-request-id"] == "lb-1234.abc"


def test_a_request_without_a_usable_id_gets_a_fresh_one(world):
    _, client, _ = world
    first = client.get("/v1/health").headers["x-request-id"]
    replaced = client.get("/v1/health", headers={"X-Request-ID": "DUPONT Jean 1850775123456"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", replaced) and first != replaced
