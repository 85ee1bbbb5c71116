"""Notifications seen from the API: emergency accesses told at once, settings, professionals' contacts."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings
from pipeline.documents.titles import document_titles
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.conftest import index_batch

pytestmark = pytest.mark.slow  # a seeded record served by the API with a sweeper

ATTENDING = "10000000009"
EMERGENCY_DOCTOR = "10000000888"


def _bearer(settings: Settings, sub: str, kind: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub, kind, **claims)}"}


def _doctor(settings: Settings, rpps: str) -> dict[str, str]:
    return _bearer(settings, rpps, "professional", profession="physician", rpps=rpps)


@pytest.fixture
def deployment(tmp_path, smtp_server):
    # A long sweep interval: anything delivered during the test was sent because it was urgent.
    settings = Settings(home=tmp_path / "home", smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_starttls=False,
                        notify_sweep_seconds=3600)  # fmt: skip
    rt = Runtime.from_settings(settings, prepare=True)
    generate_samples(tmp_path / "batch", patients=1, documents=3, seed=3, bad=False)
    documents = index_batch(rt, tmp_path / "batch", "hospital:CHU-NICE")
    with TestClient(create_app(settings)) as client:
        yield settings, client, documents[0].patient_id, documents
    rt.close()


def _wait_for(predicate, timeout: float = 15) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_an_emergency_access_is_told_at_once_to_the_patient_and_the_attending_physician(deployment, smtp_server):
    settings, client, pid, documents = deployment
    patient = _bearer(settings, pid, "patient")
    preferences = {"email": True, "sms": False, "email_address": "patient@example.org"}
    assert client.put(f"/v1/patients/{pid}/notifications", json=preferences, headers=patient).status_code == 200
    assert client.put(f"/v1/patients/{pid}/attending-physician", json={"physician_id": ATTENDING}, headers=patient).status_code == 200
    contact = client.put("/v1/me/contact", json={"email": "dr@example.org"}, headers=_doctor(settings, ATTENDING))
    assert contact.status_code == 200
    url = f"/v1/patients/{pid}/documents/{documents[0].id}"
    reason = {"X-Emergency-Reason": "unconscious patient"}
    assert client.get(url, headers={**_doctor(settings, EMERGENCY_DOCTOR), **reason}).status_code == 200

    def subjects_to(address: str) -> list[str]:
        return [m["Subject"] for m in smtp_server.mailbox.messages if m["To"] == address]

    assert _wait_for(lambda: subjects_to("dr@example.org") and "Accès d'urgence à votre dossier" in subjects_to("patient@example.org"))
    body = next(m for m in smtp_server.mailbox.messages if m["To"] == "patient@example.org" and "urgence" in m["Subject"])
    text = body.get_content()
    assert EMERGENCY_DOCTOR in text and "médecin" in text  # by whom
    rt = Runtime.from_settings(settings)
    assert document_titles(rt, documents[:1])[documents[0].id] not in text  # never medical content
    rt.close()
    # Deposits are not urgent: they wait for their coalescing window, so nothing about them went out.
    assert not any("Nouveaux documents" in m["Subject"] for m in smtp_server.mailbox.messages)


def test_the_patient_reads_and_changes_notification_settings(deployment):
    settings, client, pid, _ = deployment
    patient = _bearer(settings, pid, "patient")
    url = f"/v1/patients/{pid}/notifications"
    initial = client.get(url, headers=patient).json()
    assert (initial["email"], initial["sms"], initial["documents"], initial["email_rejected"]) == (True, False, True, None)
    wanted = {"email": False, "sms": True, "phone": "+33612345678", "documents": False, "reimbursements": True, "every_access": True}
    assert client.put(url, json=wanted, headers=patient).status_code == 200
    now = client.get(url, headers=patient).json()
    assert {k: now[k] for k in wanted} == wanted


def test_notification_settings_refuse_a_malformed_address_and_other_people(deployment):
    settings, client, pid, _ = deployment
    url = f"/v1/patients/{pid}/notifications"
    bad = client.put(
        url, json={"email": True, "sms": False, "email_address": "x\r\nBcc: all@example.org"}, headers=_bearer(settings, pid, "patient")
    )
    assert bad.status_code == 422
    assert client.get(url, headers=_doctor(settings, ATTENDING)).status_code == 403


def test_only_professionals_have_a_contact(deployment):
    settings, client, pid, _ = deployment
    assert client.put("/v1/me/contact", json={"email": "me@example.org"}, headers=_bearer(settings, pid, "patient")).status_code == 403
    doctor = _doctor(settings, ATTENDING)
    assert client.put("/v1/me/contact", json={"phone": "+33611111111"}, headers=doctor).json()["phone"] == "+33611111111"
    assert client.get("/v1/me/contact", headers=doctor).json()["phone"] == "+33611111111"
