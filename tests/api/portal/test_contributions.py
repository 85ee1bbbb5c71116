"""The patient's contributions in the portal (api/portal/contributions.py): their own documents through the API's
upload, the medical profile and the emergency contacts (edited by the patient, read only by an allowed
professional), and a document's versions."""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.portal.sessions import COOKIE
from pipeline.access.tokens import Claims
from pipeline.core.identity import with_key
from pipeline.documents.contributed import patient_source
from pipeline.index.models import Batch, Document, Patient
from pipeline.ingest.manifest import MANIFEST_COLUMNS
from tests.api.portal.conftest import LOOPBACK, client_of, csrf_of, last_entries, post_form, sign_in
from tests.conftest import index_batch

SOURCE = "hospital:CHU-PORTAL"
DOCTOR = "10000000001"
DIRECTIVES = b"Je refuse tout acharnement therapeutique.\n"


def _deposit(rt, folder: Path, ins: str, body: bytes, **extra: str) -> None:  # type: ignore[no-untyped-def]
    folder.mkdir()
    (folder / "report.txt").write_bytes(body)
    row = {"file": "report.txt", "patient_ins": ins, "source_document_id": f"CR-{ins}", "title": "Compte rendu", "document_type": "11488-4",
           "service_date": "2026-01-15", "author_id": DOCTOR, "author_profession": "physician", **extra}  # fmt: skip
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*MANIFEST_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    (folder / "manifest.csv").write_text(out.getvalue(), encoding="utf-8")
    index_batch(rt, folder, SOURCE)


@pytest.fixture
def record(world, tmp_path: Path) -> str:
    """A record of its own (one report, by DOCTOR), so what these tests add changes no other test's record."""
    _, rt, _, _, _, _ = world
    ins = with_key(f"2850575{uuid.uuid4().int % 10**6:06d}")
    _deposit(rt, tmp_path / "v1", ins, b"premiere version\n")
    with rt.sessions() as session:
        return session.scalars(select(Patient.id).where(Patient.ins == ins)).one()


def _patient(app, patient_id: str):  # type: ignore[no-untyped-def]
    client = client_of(app)
    client.cookies.set(COOKIE, app.state.portal_sessions.new(Claims(subject=patient_id, kind="patient")).id)
    return client


def _upload(client, data: dict[str, str], body: bytes = DIRECTIVES):  # type: ignore[no-untyped-def]
    return client.post("/patient/contribute", data=data, files={"file": ("directives.txt", body, "text/plain")})


def _batches(rt, patient_id: str) -> int:  # type: ignore[no-untyped-def]
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Batch).where(Batch.source == patient_source(patient_id))) or 0


def test_a_patient_uploads_advance_directives_and_follows_them_into_the_record(world, record) -> None:
    _, rt, app, _, _, _ = world
    client = _patient(app, record)
    token = csrf_of(client.get("/patient/contribute").text)
    answer = _upload(client, {"csrf": token, "title": "Mes directives", "document_type": "EXPPAT_3"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/patient/contributions/")
    deadline = time.monotonic() + 30
    while "/patient/documents/" not in (status := client.get(answer.headers["location"])).text and time.monotonic() < deadline:
        time.sleep(0.2)
    document_id = re.search(r'href="/patient/documents/([^"]+)"', status.text).group(1)  # type: ignore[union-attr]
    with rt.sessions() as session:
        stored = session.get(Document, document_id)
    assert stored is not None and (stored.class_code, stored.type_code, stored.source) == ("90", "EXPPAT_3", patient_source(record))
    assert "Mes directives" in client.get(f"/patient/documents/{document_id}").text


def test_an_upload_without_the_forms_token_is_refused_before_anything_is_stored(world, record) -> None:
    _, rt, app, _, _, _ = world
    client = _patient(app, record)
    answer = _upload(client, {"csrf": "forged", "title": "Mes directives", "document_type": "EXPPAT_3"})
    assert answer.status_code == 403 and "csrf" not in answer.headers.get("location", "")
    assert _batches(rt, record) == 0


def test_an_upload_of_a_type_that_is_not_the_patients_is_refused_with_the_reason(world, record) -> None:
    _, rt, app, _, _, _ = world
    client = _patient(app, record)
    token = csrf_of(client.get("/patient/contribute").text)
    answer = _upload(client, {"csrf": token, "title": "Compte rendu", "document_type": "11488-4"})
    assert answer.status_code == 422 and 'role="alert"' in answer.text


def test_the_patient_writes_their_medical_profile_and_reads_it_back(world, record) -> None:
    _, rt, app, _, _, _ = world
    client = _patient(app, record)
    fields = {"allergies": "Pénicilline\nArachide", "history": "", "treatments": "Levothyrox 75", "blood_group": "O-",
              "organ_donation": "yes"}  # fmt: skip
    assert post_form(client, "/patient/profile/edit", "/patient/profile", fields).status_code == 303
    shown = client.get("/patient/profile").text
    assert all(text in shown for text in ("Pénicilline", "Arachide", "Levothyrox 75", "O-"))
    assert last_entries(rt, record)[0].action == "read_emergency_contacts"


def test_a_profile_the_api_would_refuse_is_refused_and_not_saved(world, record) -> None:
    _, _, app, _, _, _ = world
    client = _patient(app, record)
    answer = post_form(client, "/patient/profile/edit", "/patient/profile", {"allergies": "x" * 201, "organ_donation": "yes"})
    assert answer.status_code == 422 and 'aria-invalid="true"' in answer.text
    assert "x" * 201 not in client.get("/patient/profile").text


def test_the_patient_sets_emergency_contacts_and_a_blank_row_is_dropped(world, record) -> None:
    _, _, app, _, _, _ = world
    client = _patient(app, record)
    rows = {"rows": "2", "name_0": "Marie Durand", "relation": "", "relation_0": "conjointe", "phone_0": "+33612345678"}
    assert post_form(client, "/patient/contacts/edit", "/patient/contacts", rows).status_code == 303
    shown = client.get("/patient/profile").text
    assert "Marie Durand" in shown and "tel:+33612345678" in shown


def test_an_emergency_contact_with_a_bad_phone_number_is_refused(world, record) -> None:
    _, _, app, _, _, _ = world
    client = _patient(app, record)
    rows = {"rows": "1", "name_0": "Paul", "relation_0": "frère", "phone_0": "0612345678"}
    answer = post_form(client, "/patient/contacts/edit", "/patient/contacts", rows)
    assert answer.status_code == 422 and 'id="phone_0"' in answer.text and "Paul" not in client.get("/patient/profile").text


def test_a_professional_of_the_care_team_reads_the_profile_without_a_way_to_edit_it(world, record) -> None:
    _, rt, app, _, _, _ = world
    patient = _patient(app, record)
    post_form(patient, "/patient/profile/edit", "/patient/profile", {"allergies": "Latex", "organ_donation": "no"})
    post_form(patient, "/patient/privacy", "/patient/professionals", {"professional_id": DOCTOR, "standing": "authorized"})
    doctor = client_of(app)
    sign_in(doctor, f"professional:{DOCTOR}")
    shown = doctor.get(f"/pro/records/{record}/profile")
    assert shown.status_code == 200 and "Latex" in shown.text and "/patient/profile/edit" not in shown.text
    entry = last_entries(rt, record)[0]
    assert (entry.actor_id, entry.action) == (DOCTOR, "read_emergency_contacts")


def test_a_professional_outside_the_care_team_is_refused_the_profile_as_the_api_refuses_it(world, record) -> None:
    _, _, app, _, _, _ = world
    other = client_of(app)
    sign_in(other, "professional:10000000003")
    assert other.get(f"/pro/records/{record}/profile").status_code == 403


def test_a_document_page_shows_its_version_and_its_history_keeps_the_superseded_one_readable(world, record, tmp_path) -> None:
    _, rt, app, _, _, _ = world
    with rt.sessions() as session:
        ins = session.get(Patient, record).ins  # type: ignore[union-attr]
    _deposit(rt, tmp_path / "v2", ins, b"version corrigee\n", version_action="replace")
    with rt.sessions() as session:
        first, second = session.scalars(select(Document).where(Document.patient_id == record).order_by(Document.version))
    client = _patient(app, record)
    page = client.get(f"/patient/documents/{second.id}").text
    assert "Version en vigueur" in page and f"/patient/documents/{second.id}/history" in page
    history = client.get(f"/patient/documents/{second.id}/history").text
    assert f"/patient/documents/{first.id}" in history and "Remplacée par une version plus récente" in history
    old = client.get(f"/patient/documents/{first.id}")
    assert old.status_code == 200 and "premiere version" in old.text


def test_an_upload_over_the_apis_request_limit_is_refused_with_the_same_limit(world, record) -> None:
    settings, rt, _, _, _, _ = world
    small = create_app(settings.model_copy(update={"upload_max_request_bytes": 4096}))
    with TestClient(small, client=LOOPBACK, follow_redirects=False) as client:
        client.cookies.set(COOKIE, small.state.portal_sessions.new(Claims(subject=record, kind="patient")).id)
        token = csrf_of(client.get("/patient/contribute").text)
        answer = _upload(client, {"csrf": token, "title": "Scan", "document_type": "DOCPAT01"}, DIRECTIVES * 200)
    assert answer.status_code == 413 and "Le fichier est trop volumineux." in answer.text
    assert _batches(rt, record) == 0


def test_a_professional_of_the_care_team_reads_a_documents_history(world, record, tmp_path) -> None:
    _, _, app, _, _, _ = world
    patient = _patient(app, record)
    post_form(patient, "/patient/privacy", "/patient/professionals", {"professional_id": DOCTOR, "standing": "authorized"})
    with world[1].sessions() as session:
        (document_id,) = session.scalars(select(Document.id).where(Document.patient_id == record))
    doctor = client_of(app)
    sign_in(doctor, f"professional:{DOCTOR}")
    history = doctor.get(f"/pro/records/{record}/documents/{document_id}/history")
    assert history.status_code == 200 and f"/pro/records/{record}/documents/{document_id}" in history.text
    assert "Version en vigueur" in history.text
