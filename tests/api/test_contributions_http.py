"""What the patient adds to their record, through the HTTP API on SQLite and PostgreSQL (docs/domain.md,
"Documents over time"): their own documents through the same pipeline as any deposit, the emergency contacts
and the medical profile, sealed at rest and read under the same rules as a class-90 document."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from pipeline.index.models import Document, Notification
from tests.api.life import DR, NURSE, World, new_ins, patient_of, world
from tests.conftest import raw_dump

pytestmark = pytest.mark.slow  # uploads through the API and its in-process workers
__all__ = ["world"]

DIRECTIVES = b"Je soussigne, en pleine possession de mes moyens, refuse tout acharnement therapeutique.\n"
PROFILE = {"allergies": ["Pénicilline"], "history": ["Appendicectomie 2011"], "treatments": ["Levothyrox 75"],
           "blood_group": "O-", "organ_donation": "yes"}  # fmt: skip
EMERGENCY = {"X-Emergency-Reason": "patient inconscient"}


def _patient(world: World) -> str:
    """A new record (a report deposited by the hospital), DR in its care team."""
    ins = new_ins()
    assert world.deposit(ins, f"CR-{uuid.uuid4()}", b"Compte rendu\n")["state"] == "indexed"
    patient_id = patient_of(world, ins)
    world.client.post(f"/v1/patients/{patient_id}/professionals/{DR}/authorize", headers=world.patient(patient_id))
    return patient_id


def _upload(world: World, patient_id: str, body: bytes, headers: dict[str, str] | None = None, **metadata: str) -> tuple[int, dict]:
    fields = {"title": "Mes directives anticipées", "document_type": "EXPPAT_3", **metadata}
    files = {"metadata": (None, json.dumps(fields), "application/json"), "file": ("directives.txt", body, "text/plain")}
    answer = world.client.post(f"/v1/patients/{patient_id}/documents", files=files, headers=headers or world.patient(patient_id))
    return answer.status_code, answer.json()


def test_the_patient_adds_advance_directives_through_the_same_pipeline_as_any_deposit(world: World) -> None:
    patient_id = _patient(world)
    me = world.patient(patient_id)
    status, answer = _upload(world, patient_id, DIRECTIVES)
    assert status == 202 and answer["status_url"] == f"/v1/patients/{patient_id}/contributions/{answer['batch']}"
    (item,) = world.wait(answer["status_url"], me)["items"]
    assert (item["state"], item["class_code"], item["type_code"]) == ("indexed", "90", "EXPPAT_3")
    listed = world.client.get(f"/v1/patients/{patient_id}/documents", headers=me, params={"class_code": "90"}).json()["items"]
    assert [(d["id"], d["source"], d["title"]) for d in listed] == [
        (item["document_id"], f"patient:{patient_id}", "Mes directives anticipées")
    ]
    content = world.client.get(f"/v1/patients/{patient_id}/documents/{item['document_id']}/content", headers=me)
    assert content.content == DIRECTIVES
    with world.rt.sessions() as session:
        stored = session.get(Document, item["document_id"])
        assert stored is not None
    with world.rt.store.open(stored.object_key) as sealed:
        assert DIRECTIVES not in sealed.read()  # encrypted at rest like any document


def test_a_patients_upload_streams_past_the_json_body_limit(world: World) -> None:
    patient_id = _patient(world)
    scan = DIRECTIVES * 2000  # ~180 KB: over the 64 KiB a JSON body may have
    status, answer = _upload(world, patient_id, scan)
    (item,) = world.wait(answer["status_url"], world.patient(patient_id))["items"]
    assert (status, item["state"]) == (202, "indexed")


def test_a_patients_upload_is_validated_like_any_deposit(world: World) -> None:
    patient_id = _patient(world)
    status, answer = _upload(world, patient_id, b"")
    (item,) = world.wait(answer["status_url"], world.patient(patient_id))["items"]
    assert (status, item["state"], item["reason"]) == (202, "rejected", "empty_file")


def test_a_patients_upload_of_another_type_than_theirs_is_refused(world: World) -> None:
    patient_id = _patient(world)
    status, answer = _upload(world, patient_id, DIRECTIVES, document_type="11490-0")
    assert (status, answer["code"]) == (422, "metadata_invalid")


def test_a_professional_cannot_add_a_document_to_the_patients_record(world: World) -> None:
    patient_id = _patient(world)
    status, answer = _upload(world, patient_id, DIRECTIVES, headers=world.professional(DR))
    assert (status, answer["code"]) == (403, "not_allowed")
    status, _ = _upload(world, patient_id, DIRECTIVES, headers=world.token("employer-1", "employer"))
    assert status == 404


def test_a_nurse_reads_the_advance_directives_the_matrix_gives_nurses(world: World) -> None:
    patient_id = _patient(world)
    world.client.post(f"/v1/patients/{patient_id}/professionals/{NURSE}/authorize", headers=world.patient(patient_id))
    _, answer = _upload(world, patient_id, DIRECTIVES)
    (item,) = world.wait(answer["status_url"], world.patient(patient_id))["items"]
    url = f"/v1/patients/{patient_id}/documents/{item['document_id']}/content"
    assert world.client.get(url, headers=world.professional(NURSE, "nurse")).content == DIRECTIVES


def test_the_medical_profile_is_sealed_and_read_by_whom_the_policy_allows(world: World) -> None:
    patient_id = _patient(world)
    url = f"/v1/patients/{patient_id}/medical-profile"
    assert world.client.put(url, json=PROFILE, headers=world.patient(patient_id)).status_code == 200
    assert world.client.get(url, headers=world.patient(patient_id)).json() == PROFILE
    assert world.client.get(url, headers=world.professional(DR)).json() == PROFILE
    world.client.post(f"/v1/patients/{patient_id}/professionals/{NURSE}/authorize", headers=world.patient(patient_id))
    nurse = world.client.get(url, headers=world.professional(NURSE, "nurse"))
    assert (nurse.status_code, nurse.json()["code"]) == (403, "matrix_forbids")  # class 90: nurses read advance directives only
    outsider = world.client.get(url, headers=world.professional("10005554443"))
    assert (outsider.status_code, outsider.json()["code"]) == (403, "not_in_care_team")
    regulator = world.token("samu-15", "emergency_regulator")
    assert world.client.get(url, headers={**regulator, **EMERGENCY}).json() == PROFILE
    assert "Pénicilline".encode() not in raw_dump(world.rt.engine)


def test_the_medical_profile_is_never_in_a_notification(world: World) -> None:
    import datetime as dt

    from pipeline.notify.dispatch import DispatchReport, compose_due

    patient_id = _patient(world)
    world.client.put(f"/v1/patients/{patient_id}/medical-profile", json=PROFILE, headers=world.patient(patient_id))
    regulator = world.token("samu-15", "emergency_regulator")
    world.client.get(f"/v1/patients/{patient_id}/medical-profile", headers={**regulator, **EMERGENCY})
    compose_due(world.rt, dt.datetime.now(dt.UTC), DispatchReport(), flush=True)
    with world.rt.sessions() as session:
        texts = [n.subject + n.body for n in session.scalars(select(Notification).where(Notification.patient_id == patient_id))]
    assert texts and not any(word in text for text in texts for word in ("Pénicilline", "Levothyrox", "O-", "Appendicectomie"))


def test_the_patient_sets_the_emergency_contacts_and_a_professional_outside_the_care_team_reads_none(world: World) -> None:
    patient_id = _patient(world)
    url = f"/v1/patients/{patient_id}/emergency-contacts"
    contacts = {"contacts": [{"name": "Paul Martin", "relation": "frère", "phone": "+33612345678"}]}
    assert world.client.put(url, json=contacts, headers=world.patient(patient_id)).status_code == 200
    assert world.client.get(url, headers=world.patient(patient_id)).json() == contacts
    assert world.client.get(url, headers=world.professional(DR)).json() == contacts
    assert world.client.get(url, headers=world.professional("10005554443")).status_code == 403
    assert world.client.put(url, json=contacts, headers=world.professional(DR)).status_code == 403
    assert b"+33612345678" not in raw_dump(world.rt.engine)


def test_an_emergency_contact_with_a_bad_phone_is_422(world: World) -> None:
    patient_id = _patient(world)
    bad = {"contacts": [{"name": "Paul", "relation": "frère", "phone": "06 12"}]}
    assert world.client.put(f"/v1/patients/{patient_id}/emergency-contacts", json=bad, headers=world.patient(patient_id)).status_code == 422
