"""Errors as problem documents (api/problems.py), the unexpected ones too, saying nothing of their cause."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings

PATIENT = "00000000-0000-4000-8000-000000000001"
SECRET = "185057512345673 Synthèse psychiatrique"  # what an exception text may carry


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path / "home")


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _failing(*_args, **_kwargs):  # type: ignore[no-untyped-def]
    raise DataError("INSERT INTO contacts …", {"email": SECRET}, Exception(f"value too long: {SECRET}"))


def test_an_unexpected_failure_is_a_500_problem_document_that_tells_nothing_of_its_cause(settings, client, monkeypatch, caplog):
    monkeypatch.setattr("api.routes.record.check", _failing)
    token = mint_token(settings, PATIENT, "patient")
    with caplog.at_level(logging.ERROR):
        response = client.get(f"/v1/patients/{PATIENT}/care-history", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["status"]) == ("internal_error", 500)
    assert problem["instance"].startswith("urn:uuid:")
    assert "185057512345673" not in response.text and "DataError" not in response.text
    incident = problem["instance"].removeprefix("urn:uuid:")
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert incident in logged and "/v1/patients/{patient_id}/care-history" in logged
    assert "185057512345673" not in logged and "Synth" not in logged


def test_an_unexpected_failure_under_fhir_is_a_500_operation_outcome_that_tells_nothing_of_its_cause(settings, client, monkeypatch):
    monkeypatch.setattr("api.routes.fhir.capability_statement", _failing)
    response = client.get("/fhir/metadata")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/fhir+json"
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "internal_error"
    assert outcome["issue"][0]["diagnostics"].startswith("urn:uuid:")  # the incident, for the operator
    assert "185057512345673" not in response.text and "DataError" not in response.text
