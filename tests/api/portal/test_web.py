"""What every portal page shares (api/portal/web.py, sessions.py, auth.py): CSP, cookies, CSRF, sign-in and out."""

from __future__ import annotations

from sqlalchemy import select

from api.portal.sessions import COOKIE
from pipeline.index.models import Document
from tests.api.portal.conftest import client_of, csrf_of, post_form, sign_in

PAGES = ["/patient", "/patient/documents", "/patient/care", "/patient/access-log", "/patient/privacy", "/patient/notifications",
         "/patient/close"]  # fmt: skip


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def test_every_page_has_the_strict_policy_and_cannot_be_framed(world):
    _, _, app, patients, _, _ = world
    client = client_of(app)
    pages = [client.get("/")]
    sign_in(client, f"patient:{patients[0]}")
    pages += [client.get(url) for url in PAGES]
    for response in pages:
        assert response.status_code == 200
        policy = _directives(response.headers["content-security-policy"])
        assert policy["default-src"] == ["'none'"] and "script-src" not in policy  # no script at all, inline or not
        assert policy["style-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
        assert response.headers["x-frame-options"] == "DENY"
        assert "style=" not in response.text and "<script" not in response.text


def test_no_page_refers_to_another_host(world):
    _, _, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    for url in PAGES:
        assert "http://" not in client.get(url).text and "https://" not in client.get(url).text, url


def test_the_session_cookie_is_httponly_and_samesite_and_secure_over_https(world):
    _, _, app, _, _, _ = world
    plain = client_of(app).get("/").headers["set-cookie"]
    assert plain.startswith(f"{COOKIE}=") and "HttpOnly" in plain and "SameSite=lax" in plain and "Secure" not in plain
    secure = client_of(app).get("https://testserver/").headers["set-cookie"]
    assert secure.startswith("__Host-") and "Secure" in secure and "HttpOnly" in secure


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(world):
    _, rt, app, patients, documents, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    mine = next(d for d in documents if d.patient_id == patients[0])
    for data in ({}, {"csrf": "forged"}):
        response = client.post(f"/patient/documents/{mine.id}/mask", data=data)
        assert response.status_code == 403
    with rt.sessions() as session:
        assert session.scalar(select(Document.masked).where(Document.id == mine.id)) is False


def test_a_token_from_another_session_is_refused(world):
    _, _, app, patients, documents, _ = world
    attacker, victim = client_of(app), client_of(app)
    sign_in(victim, f"patient:{patients[0]}")
    foreign = csrf_of(attacker.get("/").text)
    mine = next(d for d in documents if d.patient_id == patients[0])
    assert victim.post(f"/patient/documents/{mine.id}/mask", data={"csrf": foreign}).status_code == 403


def test_signing_in_replaces_the_anonymous_session_id(world):
    _, _, app, patients, _, _ = world
    client = client_of(app)
    client.get("/")
    before = client.cookies[COOKIE]
    sign_in(client, f"patient:{patients[0]}")
    assert client.cookies[COOKIE] != before


def test_signing_out_ends_the_session_even_for_a_copied_cookie(world):
    _, _, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    copied = client.cookies[COOKIE]
    assert post_form(client, "/patient", "/signout", {}).status_code == 303
    replay = client_of(app)
    replay.cookies.set(COOKIE, copied)
    response = replay.get("/patient")
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_a_page_without_a_session_leads_to_the_sign_in_page(world):
    _, _, app, _, _, _ = world
    response = client_of(app).get("/patient/documents")
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_the_demo_sign_in_is_not_offered_to_another_machine(world):
    from fastapi.testclient import TestClient

    _, _, app, patients, _, _ = world
    remote = TestClient(app, client=("192.0.2.7", 40000), follow_redirects=False)
    page = remote.get("/")
    assert "patient:" not in page.text
    token = app.state.portal_sessions.get(remote.cookies[COOKIE]).csrf  # a valid token: only the address is wrong
    response = remote.post("/signin/demo", data={"csrf": token, "identity": f"patient:{patients[0]}"})
    assert response.status_code == 403


def test_an_identity_not_offered_is_refused(world):
    _, _, app, _, _, _ = world
    client = client_of(app)
    page = client.get("/")
    response = client.post("/signin/demo", data={"csrf": csrf_of(page.text), "identity": "professional:99999999999"})
    assert response.status_code == 403


def test_french_first_and_english_on_request(world):
    _, _, app, _, _, _ = world
    client = client_of(app)
    assert "Connexion" in client.get("/").text
    english = client.get("/?lang=en")
    assert english.headers["content-language"] == "en" and "Sign in" in english.text
    assert "Sign in" in client.get("/").text  # the choice is kept
