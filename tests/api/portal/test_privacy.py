"""What the patient controls, as forms (api/portal/privacy.py): each does what the API call does, audited alike."""

from __future__ import annotations

import io
import zipfile

from sqlalchemy import select

from pipeline.access.recordview import load_record
from pipeline.index.models import Document, Patient
from tests.api.portal.conftest import client_of, last_entries, post_form, sign_in

DOCTOR = "10000000001"


def _patient(world):  # type: ignore[no-untyped-def]
    _, _, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    return client


def _record(world):  # type: ignore[no-untyped-def]
    _, rt, _, patients, _, _ = world
    with rt.sessions() as session:
        return load_record(session, patients[0])


def test_masking_then_unmasking_a_document_from_its_page(world):
    _, rt, _, patients, documents, _ = world
    client = _patient(world)
    doc = next(d for d in documents if d.patient_id == patients[0])
    url = f"/patient/documents/{doc.id}"
    assert post_form(client, url, f"{url}/mask", {}).status_code == 303
    with rt.sessions() as session:
        assert session.scalar(select(Document.masked).where(Document.id == doc.id)) is True
    assert last_entries(rt, patients[0])[0].action == "mask"
    assert "Démasquer ce document" in client.get(url).text
    post_form(client, url, f"{url}/unmask", {})
    with rt.sessions() as session:
        assert session.scalar(select(Document.masked).where(Document.id == doc.id)) is False


def test_hiding_a_document_from_representatives(world):
    _, rt, _, patients, documents, _ = world
    client = _patient(world)
    doc = next(d for d in documents if d.patient_id == patients[0])
    url = f"/patient/documents/{doc.id}"
    post_form(client, url, f"{url}/hide-from-representatives", {})
    with rt.sessions() as session:
        assert session.scalar(select(Document.hidden_from_representatives).where(Document.id == doc.id)) is True
    assert last_entries(rt, patients[0])[0].action == "hide_from_representatives"


def test_authorizing_then_blocking_a_professional(world):
    _, rt, _, patients, _, _ = world
    client = _patient(world)
    post_form(client, "/patient/privacy", "/patient/professionals", {"professional_id": DOCTOR, "standing": "authorized"})
    assert DOCTOR in _record(world).care_team
    post_form(client, "/patient/privacy", "/patient/professionals", {"professional_id": DOCTOR, "standing": "blocked"})
    record = _record(world)
    assert DOCTOR in record.blocked and DOCTOR not in record.care_team
    assert last_entries(rt, patients[0])[0].action == "block_professional"
    assert f"RPPS {DOCTOR}" in client.get("/patient/privacy").text


def test_the_privacy_page_is_audited_as_reading_the_care_team(world):
    _, rt, _, patients, _, _ = world
    assert _patient(world).get("/patient/privacy").status_code == 200
    assert last_entries(rt, patients[0])[0].action == "read_care_team"


def test_a_malformed_professional_id_is_refused(world):
    client = _patient(world)
    response = post_form(client, "/patient/privacy", "/patient/professionals", {"professional_id": "a b\u00e9", "standing": "blocked"})
    assert response.status_code == 422


def test_choosing_the_attending_physician_and_opposing_emergency_access(world):
    client = _patient(world)
    post_form(client, "/patient/privacy", "/patient/attending-physician", {"physician_id": "10000000005"})
    post_form(client, "/patient/privacy", "/patient/emergency-opposition", {"opposed": "yes"})
    record = _record(world)
    assert record.attending_physician == "10000000005" and record.emergency_opposed
    post_form(client, "/patient/privacy", "/patient/emergency-opposition", {"opposed": "no"})
    assert not _record(world).emergency_opposed


def test_notification_channels_are_saved_and_a_bad_number_refused(world):
    _, rt, _, patients, _, _ = world
    client = _patient(world)
    choices = {"sms": "yes", "every_access": "yes", "documents": "yes", "phone": "+33612345678"}
    assert post_form(client, "/patient/notifications", "/patient/notifications", choices).status_code == 303
    with rt.sessions() as session:
        patient = session.get(Patient, patients[0])
        assert (patient.notify_email, patient.notify_sms, patient.notify_every_access) == (False, True, True)
    assert "+33612345678" in client.get("/patient/notifications").text
    bad = post_form(client, "/patient/notifications", "/patient/notifications", {"phone": "0612"})
    assert bad.status_code == 422


def test_the_export_is_a_zip_of_the_documents_the_care_history_and_the_access_log(world):
    _, _, _, patients, documents, _ = world
    response = _patient(world).get("/patient/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    extras = {"index.json", "care_history.csv", "care_history.json", "access_log.csv", "access_log.json"}
    assert extras <= set(names) and len(names) == len(extras) + sum(d.patient_id == patients[0] for d in documents)


def test_the_patient_sees_a_declared_consent_and_withdraws_it(world):
    from pipeline.access import careteam

    _, rt, _, patients, _, _ = world
    careteam.declare_consent(rt, patients[0], "10000000009")
    client = _patient(world)
    page = client.get("/patient/privacy").text
    assert "RPPS 10000000009 — consentement déclaré par le professionnel" in page
    response = post_form(client, "/patient/privacy", "/patient/consents/revoke", {"professional_id": "10000000009"})
    assert response.status_code == 303
    assert last_entries(rt, patients[0])[0].action == "revoke_consent"
    assert all(row.relation != "declared_consent" for row in careteam.care_team(rt, patients[0]).rows)


def test_closing_needs_the_confirmation_then_nobody_reads_the_record(world):  # last: the record stays closed
    _, rt, _, patients, _, _ = world
    client = _patient(world)
    unconfirmed = post_form(client, "/patient/close", "/patient/close", {})
    assert unconfirmed.status_code == 422 and _record(world).status == "open"
    assert post_form(client, "/patient/close", "/patient/close", {"confirm": "yes"}).status_code == 200
    assert _record(world).status == "closed"
    assert last_entries(rt, patients[0])[0].action == "close_record"
    assert client.get("/patient/documents").status_code == 403
