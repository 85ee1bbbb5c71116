"""Response headers (api/headers.py): nothing the API serves runs, is framed or is kept by a browser."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from api.headers import content_headers
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings
from pipeline.index.models import Document
from pipeline.runtime import Runtime
from tests.conftest import index_batch


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("headers")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=1, documents=3, seed=8, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    documents = index_batch(rt, root / "batch", "hospital:CHU-HEADERS")
    with TestClient(create_app(settings)) as client:
        yield settings, rt, client, documents
    rt.close()


def _patient(settings: Settings, patient_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, patient_id, 'patient')}"}


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def _assert_inert(response) -> None:  # type: ignore[no-untyped-def]
    """Not sniffed, not framed, not cached, and nothing in it may run or load anything."""
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "sandbox" in policy and policy["sandbox"] == []  # no allow-scripts, no allow-same-origin


def test_every_answer_about_a_patient_is_inert_and_never_stored(world):
    settings, _, client, documents = world
    doc = documents[0]
    me = _patient(settings, doc.patient_id)
    answers = [
        client.get(f"/v1/patients/{doc.patient_id}/documents", headers=me),
        client.get(f"/v1/patients/{doc.patient_id}/documents/{doc.id}", headers=me),
        client.get(f"/v1/patients/{doc.patient_id}/access-log", headers=me),
        client.get(f"/v1/patients/{doc.patient_id}/care-history", headers=me),
        client.get(f"/v1/patients/{doc.patient_id}/notifications", headers=me),
        client.get(f"/v1/patients/{doc.patient_id}/export", headers=me),
        client.get(f"/v1/patients/{doc.patient_id}/documents"),  # 401
        client.get(f"/v1/patients/{doc.patient_id}/documents/00000000-0000-0000-0000-000000000000", headers=me),  # 404
        client.get("/v1/nowhere"),
        client.get("/v1/health"),
    ]
    assert [a.status_code for a in answers] == [200] * 6 + [401, 404, 404, 200]
    for answer in answers:
        _assert_inert(answer)


@pytest.mark.parametrize("stored_type", ["text/html", "image/svg+xml", "application/xhtml+xml", "text/xml; charset=utf-8"])
def test_a_document_stored_under_a_type_a_browser_would_run_is_an_inert_download(world, stored_type):
    """Defence in depth: the pipeline refuses HTML and SVG, but whatever type a row holds, it is never served as it."""
    settings, rt, client, documents = world
    doc = documents[1]
    with rt.sessions() as session:
        session.execute(update(Document).where(Document.id == doc.id).values(mime_type=stored_type))
        session.commit()
    try:
        response = client.get(f"/v1/patients/{doc.patient_id}/documents/{doc.id}/content", headers=_patient(settings, doc.patient_id))
    finally:
        with rt.sessions() as session:
            session.execute(update(Document).where(Document.id == doc.id).values(mime_type=doc.mime_type))
            session.commit()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f'attachment; filename="{doc.id}.bin"'
    _assert_inert(response)


def test_a_pdf_is_an_inert_attachment_named_by_its_id_and_never_by_its_title(world, monkeypatch):
    from api.routes import documents as routes

    settings, _, client, documents = world
    doc = next(d for d in documents if d.mime_type == "application/pdf")
    url = f"/v1/patients/{doc.patient_id}/documents/{doc.id}/content"
    whole = client.get(url, headers=_patient(settings, doc.patient_id))
    monkeypatch.setattr(routes, "WHOLE_BODY_LIMIT", 0)  # the streamed path too
    streamed = client.get(url, headers=_patient(settings, doc.patient_id))
    for response in (whole, streamed):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == f'attachment; filename="{doc.id}.pdf"'
        _assert_inert(response)


@pytest.mark.parametrize(
    ("stored_type", "served"),
    [
        ("image/png", 'inline; filename="d-1.png"'),
        ("image/jpeg", 'inline; filename="d-1.jpg"'),
        ("text/plain", 'inline; filename="d-1.txt"'),
        ("application/pdf", 'attachment; filename="d-1.pdf"'),
        ("application/xml", 'attachment; filename="d-1.xml"'),
        ("image/tiff", 'attachment; filename="d-1.tif"'),
        ("image/svg+xml", 'attachment; filename="d-1.bin"'),
    ],
)
def test_only_images_and_plain_text_are_shown_inline(stored_type, served):
    assert content_headers("d-1", stored_type) == {"Content-Disposition": served}


def test_a_file_name_keeps_nothing_that_could_break_out_of_the_header():
    assert content_headers('a"; filename*=x\r\nSet-Cookie: s=1', "application/pdf") == {
        "Content-Disposition": 'attachment; filename="afilenamexSet-Cookies1.pdf"'
    }


def test_the_interactive_documentation_is_served_from_this_app_alone(world):
    """/docs runs Swagger UI from the app's own files: no other host, no inline script; ReDoc is not offered."""
    _, _, client, _ = world
    response = client.get("/docs")
    assert response.status_code == 200
    policy = _directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    assert "'self'" in policy["connect-src"]  # the viewer fetches /openapi.json
    assert not re.findall(r'(?:src|href)="(?!/)', response.text)  # every script and style from here
    assert "<script>" not in response.text
    for url in re.findall(r'(?:src|href)="(/[^"]+)"', response.text):
        assert client.get(url).status_code == 200, url
    assert client.get("/redoc").status_code == 404
