"""Sign-in with OpenID Connect (api/portal/oidc.py) against a real provider process (oidc-provider-mock, served on
this machine): authorization code with PKCE, the ID token's claims mapped like the API's bearer tokens."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from oidc_provider_mock import run_server_in_thread

from api.app import create_app
from api.portal.sessions import COOKIE
from pipeline.core.settings import Settings
from tests.api.portal.conftest import LOOPBACK


@pytest.fixture(scope="module")
def provider():
    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def app(world, provider):
    settings, *_ = world
    configured = Settings(home=settings.home, portal_oidc_issuer=provider, portal_oidc_client_id="dmp-portal-test",
                          portal_oidc_client_secret="a-secret")  # fmt: skip
    app = create_app(configured)
    with TestClient(app, client=LOOPBACK):
        yield app


def _user(provider: str, sub: str, claims: dict[str, str]) -> None:
    httpx.put(f"{provider}/users/{sub}", json=claims).raise_for_status()


def _through_provider(app, sub: str):  # type: ignore[no-untyped-def]
    """Start the flow, sign in at the provider as `sub`, come back: the portal's answer to the callback."""
    client = TestClient(app, client=LOOPBACK, follow_redirects=False)
    start = client.get("/signin/oidc")
    assert start.status_code == 303
    authorize = start.headers["location"]
    at_provider = httpx.post(authorize, data={"sub": sub})
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    return client, authorize, client.get(f"{back.path}?{back.query}")


def test_the_authorization_request_carries_an_s256_challenge_of_the_session_verifier(app, provider):
    client = TestClient(app, client=LOOPBACK, follow_redirects=False)
    query = parse_qs(urlsplit(client.get("/signin/oidc").headers["location"]).query)
    verifier = app.state.portal_sessions.get(client.cookies[COOKIE]).oidc["verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] == [challenge]
    assert query["response_type"] == ["code"] and query["client_id"] == ["dmp-portal-test"] and query["nonce"][0]


def test_a_patient_signs_in_at_the_provider_and_reads_their_record(app, provider, world):
    _, _, _, patients, _, _ = world
    _user(provider, patients[0], {"kind": "patient"})
    client, _, answer = _through_provider(app, patients[0])
    assert answer.status_code == 303 and answer.headers["location"] == "/patient"
    assert client.get("/patient").status_code == 200


def test_a_professional_gets_their_profession_and_rpps_from_the_id_token(app, provider):
    _user(provider, "10000000077", {"kind": "professional", "profession": "nurse", "rpps": "10000000077"})
    client, _, answer = _through_provider(app, "10000000077")
    assert answer.headers["location"] == "/pro"
    claims = app.state.portal_sessions.get(client.cookies[COOKIE]).claims
    assert (claims.kind, claims.profession, claims.rpps) == ("professional", "nurse", "10000000077")


def test_an_id_token_without_an_actor_kind_signs_nobody_in(app, provider):
    _user(provider, "someone", {"email": "someone@example.org"})
    client, _, answer = _through_provider(app, "someone")
    assert answer.status_code == 400
    assert client.get("/patient").status_code == 303  # still signed out


def test_a_callback_with_another_state_is_refused(app, provider, world):
    _, _, _, patients, _, _ = world
    _user(provider, patients[0], {"kind": "patient"})
    client = TestClient(app, client=LOOPBACK, follow_redirects=False)
    authorize = client.get("/signin/oidc").headers["location"]
    back = urlsplit(httpx.post(authorize, data={"sub": patients[0]}).headers["location"])
    forged = {k: v[0] for k, v in parse_qs(back.query).items()} | {"state": "forged"}
    assert client.get(back.path, params=forged).status_code == 400


def test_the_demo_identities_are_not_offered_when_a_provider_is_configured(app):
    page = TestClient(app, client=LOOPBACK).get("/")
    assert "/signin/oidc" in page.text and "patient:" not in page.text
