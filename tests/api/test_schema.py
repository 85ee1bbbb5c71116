"""schemathesis against the app's own OpenAPI document: no 5xx, every response matches its schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from api.app import create_app
from api.auth import mint_token
from pipeline.settings import Settings

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


@pytest.fixture(scope="module", autouse=True)
def started():
    from fastapi.testclient import TestClient

    with TestClient(APP):  # runs the lifespan: runtime and verifier
        yield


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_honours_its_own_openapi_document(case):
    token = mint_token(Settings(home=_home), "10001234567", "professional", profession="physician", rpps="10001234567")
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
