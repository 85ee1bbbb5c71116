"""schemathesis against the app's own OpenAPI document: no 5xx, every response matches its schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings

pytestmark = pytest.mark.slow  # property-based runs over the whole OpenAPI document

pytest.importorskip("schemathesis")

_home = None


def _app():
    import tempfile
    from pathlib import Path

    global _home
    _home = Path(tempfile.mkdtemp(prefix="dmp-schema-"))
    return create_app(Settings(home=_home))


APP = _app()
# Raw bodies of the ingestion routes, which schemathesis cannot build from a schema.
schemathesis.openapi.media_type("application/zip", st.binary(max_size=512))
schemathesis.openapi.media_type("application/x-ndjson", st.binary(max_size=512))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def record():
    """A patient's record with indexed documents in the app's index: (patient id, a document id)."""
    from pipeline.runtime import Runtime
    from pipeline.samples import generate_samples
    from tests.conftest import index_batch

    generate_samples(_home / "batch", patients=1, documents=3, seed=5, bad=False)
    rt = Runtime.from_settings(Settings(home=_home), prepare=True)
    documents = index_batch(rt, _home / "batch", "hospital:CHU-SCHEMA")
    rt.close()
    return documents[0].patient_id, documents[0].id


@pytest.fixture(scope="module")
def client(record):
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:  # runs the lifespan: runtime and verifier
        yield client


def _bearer(subject: str, kind: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(Settings(home=_home), subject, kind, **claims)}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_honours_its_own_openapi_document(case, client):
    headers = _bearer("10001234567", "professional", profession="physician", rpps="10001234567")
    case.call_and_validate(headers=headers, excluded_checks=_semantic_checks(case))


# Closing (or opposing) the record would turn every later request into a 403 before any query ran.
@schema.exclude(path_regex=r"/(close|opposition)$").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_honours_its_openapi_document_for_the_patient_of_a_real_record(case, client, record):
    """As the record's patient, on its real ids: the generated parameters reach the queries (a stranger's
    requests stop at the access check), and every answer, times included, must match the schema."""
    patient_id, document_id = record
    for name, value in (("patient_id", patient_id), ("document_id", document_id)):
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = value
    case.call_and_validate(headers=_bearer(patient_id, "patient"), excluded_checks=_semantic_checks(case))


def _semantic_checks(case) -> list:
    """An INS of the right shape may still have a wrong key (422 invalid_ins): what no JSON Schema can say. On the
    routes taking one, a schema-valid body refused is not a failure; every other check still runs."""
    from schemathesis.checks import positive_data_acceptance

    return [positive_data_acceptance] if case.path.startswith("/v1/records/") else []


def _integer_query_parameters() -> list[tuple[str, str, str]]:
    return [
        (method, path, parameter["name"])
        for path, operations in APP.openapi()["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and parameter["schema"].get("type") == "integer"
    ]


@pytest.mark.parametrize(("method", "path", "name"), _integer_query_parameters())
def test_an_integer_parameter_beyond_64_bits_is_refused_before_the_database(client, record, method, path, name):
    patient_id, document_id = record
    url = path.format(patient_id=patient_id, document_id=document_id)
    for value in (2**63, 2**64 + 1, 10**30):
        response = client.request(method, url, params={name: value}, headers=_bearer(patient_id, "patient"))
        assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), (name, value)
