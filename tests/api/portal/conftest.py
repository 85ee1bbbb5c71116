"""A portal on an embedded deployment with two patients' documents, and helpers to sign in through its pages."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from pipeline.core.settings import Settings
from pipeline.index.models import AuditEntry, Patient
from pipeline.runtime import Runtime
from tests.conftest import index_batch

LOOPBACK = ("127.0.0.1", 50123)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """settings, runtime, app, the two patients' ids (most documents first), their documents, INS by patient."""
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("portal")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=2, documents=20, seed=21, bad=False)  # 20: one of them a CDA
    rt = Runtime.from_settings(settings, prepare=True)
    documents = index_batch(rt, root / "batch", "hospital:CHU-PORTAL")
    with rt.sessions() as session:
        ins = {p.id: p.ins for p in session.scalars(select(Patient))}
    patients = sorted(ins, key=lambda pid: -sum(d.patient_id == pid for d in documents))
    app = create_app(settings)
    with TestClient(app, client=LOOPBACK):  # runs the lifespan once for the module
        yield settings, rt, app, patients, documents, ins
    rt.close()


def client_of(app) -> TestClient:  # type: ignore[no-untyped-def]
    """A browser of its own (its own cookies), on this machine."""
    return TestClient(app, client=LOOPBACK, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(client: TestClient, identity: str) -> None:
    """Through the sign-in page: `patient:ID` or `professional:RPPS`."""
    page = client.get("/")
    response = client.post("/signin/demo", data={"csrf": csrf_of(page.text), "identity": identity})
    assert response.status_code == 303, response.text


def post_form(client: TestClient, page_url: str, action: str, data: dict[str, str]):  # type: ignore[no-untyped-def]
    """Post a form the way a browser does after loading `page_url` (its CSRF token included)."""
    token = csrf_of(client.get(page_url).text)
    return client.post(action, data={"csrf": token, **data})


def last_entries(rt: Runtime, chain: str, n: int = 1) -> list[AuditEntry]:
    with rt.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.id.desc()).limit(n)))
