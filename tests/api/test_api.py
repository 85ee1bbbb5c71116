"""The HTTP API: authentication, consented reads, patient controls, and an audit entry for every attempt."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from pipeline.access.audit import verify
from pipeline.access.tokens import mint_token
from pipeline.core.keys import audit_key
from pipeline.core.settings import Settings
from pipeline.documents.stored import read_document
from pipeline.documents.titles import document_titles
from pipeline.index.models import AuditEntry
from pipeline.runtime import Runtime
from tests.conftest import index_batch

DR = "10001234567"  # RPPS of a physician
NURSE = "10007654321"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An embedded deployment with two patients' documents indexed, and an API client."""
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("api")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=2, documents=8, seed=21, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    documents = index_batch(rt, root / "batch", "hospital:CHU-API")
    patients = sorted({d.patient_id for d in documents})
    with TestClient(create_app(settings)) as client:
        yield settings, rt, client, patients, documents
    rt.close()


def _token(settings: Settings, sub: str, kind: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub, kind, **claims)}"}


def _patient(settings, pid):
    return _token(settings, pid, "patient")


def _doctor(settings, rpps=DR):
    return _token(settings, rpps, "professional", profession="physician", rpps=rpps)


def _docs_of(documents, pid):
    return [d for d in documents if d.patient_id == pid]


def test_a_request_without_a_valid_token_is_401_with_a_problem_document(world):
    settings, _, client, patients, _ = world
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
        response = client.get(f"/v1/patients/{patients[0]}/documents", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] in {"missing_token", "invalid_token"}


def test_the_patient_lists_and_reads_their_own_documents(world):
    settings, rt, client, patients, documents = world
    mine = _docs_of(documents, patients[0])
    listed = client.get(f"/v1/patients/{patients[0]}/documents", headers=_patient(settings, patients[0])).json()
    assert {d["id"] for d in listed["items"]} == {d.id for d in mine}
    content = client.get(f"/v1/patients/{patients[0]}/documents/{mine[0].id}/content", headers=_patient(settings, patients[0]))
    assert content.status_code == 200
    assert content.content == b"".join(read_document(rt, mine[0]))


def test_a_large_document_is_streamed_and_reads_back_whole(world, monkeypatch):
    from api.routes import documents as routes

    settings, rt, client, patients, documents = world
    doc = _docs_of(documents, patients[0])[0]
    monkeypatch.setattr(routes, "WHOLE_BODY_LIMIT", 0)  # every document takes the streaming path
    content = client.get(f"/v1/patients/{patients[0]}/documents/{doc.id}/content", headers=_patient(settings, patients[0]))
    assert content.status_code == 200
    assert content.content == b"".join(read_document(rt, doc))
    assert int(content.headers["content-length"]) == doc.size


def test_a_document_damaged_in_storage_is_refused_with_integrity_error_and_no_bytes(world):
    settings, rt, client, patients, documents = world
    doc = _docs_of(documents, patients[0])[1]
    path = rt.store._path(doc.object_key)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[-20] ^= 0x01  # inside the last segment's ciphertext
    path.write_bytes(bytes(damaged))
    try:
        response = client.get(f"/v1/patients/{patients[0]}/documents/{doc.id}/content", headers=_patient(settings, patients[0]))
    finally:
        path.write_bytes(original)
    assert response.status_code == 500
    assert response.json()["code"] == "integrity_error"
    assert document_titles(rt, [doc])[doc.id] not in response.text


def test_a_document_shredded_between_the_check_and_the_read_is_404(tmp_path, monkeypatch):
    from api import access
    from pipeline.documents.stored import shred_document
    from pipeline.samples import generate_samples

    settings = Settings(home=tmp_path / "home")
    generate_samples(tmp_path / "batch", patients=1, documents=2, seed=4, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    doc = index_batch(rt, tmp_path / "batch", "hospital:CHU-API")[0]
    real_check = access.check

    def check_then_shred(*args, **kwargs):  # type: ignore[no-untyped-def]
        allowed = real_check(*args, **kwargs)
        shred_document(rt, doc.id)  # another request erases it right after the policy said yes
        return allowed

    monkeypatch.setattr("api.routes.documents.check", check_then_shred)
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/v1/patients/{doc.patient_id}/documents/{doc.id}/content", headers=_patient(settings, doc.patient_id))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    rt.close()


def test_a_professional_outside_the_care_team_is_refused_until_authorized_then_blocked(world):
    settings, _, client, patients, documents = world
    pid, doc = patients[1], _docs_of(documents, patients[1])[0]
    url = f"/v1/patients/{pid}/documents/{doc.id}"
    denied = client.get(url, headers=_doctor(settings, "10000000001"))
    assert (denied.status_code, denied.json()["code"]) == (403, "not_in_care_team")
    assert client.post(f"/v1/patients/{pid}/professionals/10000000001/authorize", headers=_patient(settings, pid)).status_code == 200
    assert client.get(url, headers=_doctor(settings, "10000000001")).status_code == 200
    assert client.post(f"/v1/patients/{pid}/professionals/10000000001/block", headers=_patient(settings, pid)).status_code == 200
    blocked = client.get(url, headers=_doctor(settings, "10000000001"))
    assert (blocked.status_code, blocked.json()["code"]) == (403, "blocked")


def test_a_masked_document_a_missing_one_and_another_patients_look_the_same(world):
    settings, _, client, patients, documents = world
    pid = patients[0]
    client.post(f"/v1/patients/{pid}/professionals/{DR}/authorize", headers=_patient(settings, pid))
    masked = _docs_of(documents, pid)[1]
    assert client.post(f"/v1/patients/{pid}/documents/{masked.id}/mask", headers=_patient(settings, pid)).status_code == 200
    other = _docs_of(documents, patients[1])[0]
    answers = [
        client.get(f"/v1/patients/{pid}/documents/{doc_id}", headers=_doctor(settings))
        for doc_id in (masked.id, "00000000-0000-0000-0000-000000000000", other.id)
    ]
    assert {(a.status_code, a.text) for a in answers} == {(404, answers[0].text)}
    listed = client.get(f"/v1/patients/{pid}/documents", headers=_doctor(settings)).json()
    assert masked.id not in {d["id"] for d in listed["items"]}
    # The patient still sees it; the attending physician too.
    assert client.get(f"/v1/patients/{pid}/documents/{masked.id}", headers=_patient(settings, pid)).status_code == 200
    client.put(f"/v1/patients/{pid}/attending-physician", json={"physician_id": "10000000009"}, headers=_patient(settings, pid))
    assert client.get(f"/v1/patients/{pid}/documents/{masked.id}", headers=_doctor(settings, "10000000009")).status_code == 200


def test_emergency_access_needs_a_reason_is_flagged_and_stops_when_the_patient_opposes(world, tmp_path):
    settings, rt, client, patients, documents = world
    pid, doc = patients[1], _docs_of(documents, patients[1])[-1]
    url = f"/v1/patients/{pid}/documents/{doc.id}"
    stranger = _doctor(settings, "10000000077")
    allowed = client.get(url, headers={**stranger, "X-Emergency-Reason": "unconscious patient, suspected overdose"})
    assert allowed.status_code == 200
    with rt.sessions() as session:
        last = session.scalars(select(AuditEntry).where(AuditEntry.chain == pid).order_by(AuditEntry.seq.desc())).first()
    assert (last.actor_id, last.emergency, last.outcome) == ("10000000077", True, "allowed")
    client.put(f"/v1/patients/{pid}/emergency-opposition", json={"opposed": True}, headers=_patient(settings, pid))
    refused = client.get(url, headers={**stranger, "X-Emergency-Reason": "unconscious patient"})
    assert (refused.status_code, refused.json()["code"]) == (403, "emergency_opposed")
    client.put(f"/v1/patients/{pid}/emergency-opposition", json={"opposed": False}, headers=_patient(settings, pid))


@pytest.mark.parametrize("kind", ["employer", "insurer", "mutuelle", "bank"])
def test_parties_that_may_never_read_get_the_answer_of_a_record_that_does_not_exist(world, kind):
    settings, _, client, patients, _ = world
    headers = _token(settings, "org-1", kind)
    response = client.get(f"/v1/patients/{patients[0]}/documents", headers=headers)
    missing = client.get("/v1/patients/00000000-0000-4000-8000-000000000000/documents", headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert response.text == missing.text


def test_only_the_patient_controls_the_record(world):
    settings, _, client, patients, _ = world
    response = client.post(f"/v1/patients/{patients[0]}/professionals/10000000555/authorize", headers=_doctor(settings))
    assert response.status_code == 403


def test_the_patient_reads_the_whole_access_log_and_a_professional_only_their_own_entries(world):
    settings, _, client, patients, _ = world
    pid = patients[0]
    client.get(f"/v1/patients/{pid}/documents", headers=_doctor(settings))
    everything = client.get(f"/v1/patients/{pid}/access-log?limit=1000", headers=_patient(settings, pid)).json()
    assert {e["actor_id"] for e in everything} >= {pid, DR}
    own = client.get(f"/v1/patients/{pid}/access-log?limit=1000", headers=_doctor(settings))
    assert own.status_code == 200
    assert {e["actor_id"] for e in own.json()} == {DR}


def test_the_care_history_route_applies_the_window(world):
    settings, _, client, patients, _ = world
    response = client.get(f"/v1/patients/{patients[0]}/care-history", headers=_patient(settings, patients[0]))
    assert response.status_code == 200
    assert set(response.json()) >= {"items", "total", "window_start", "as_of"}


def _moments(value: object) -> list[str]:
    """Every string in a JSON value that holds a time of day (a date and a time), wherever it is."""
    if isinstance(value, dict):
        return [m for item in value.values() for m in _moments(item)]
    if isinstance(value, list):
        return [m for item in value for m in _moments(item)]
    return [value] if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:", value) else []


def test_every_time_the_api_returns_is_rfc3339_with_its_utc_offset(world):
    settings, _, client, patients, documents = world
    pid, doc = patients[0], _docs_of(documents, patients[0])[0]
    answers = [
        client.get(f"/v1/patients/{pid}/{route}", headers=_patient(settings, pid)).json()
        for route in ("documents", f"documents/{doc.id}", "access-log", "care-history", "notifications")
    ]
    moments = _moments(answers)
    assert len(moments) >= 3  # deposit times, access-log times
    for moment in moments:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", moment), moment


def test_every_attempt_allowed_or_denied_is_in_an_intact_audit_chain(world):
    settings, rt, client, patients, documents = world
    pid = patients[1]
    with rt.sessions() as session:
        before = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.chain == pid))
    doc = _docs_of(documents, pid)[0]
    client.get(f"/v1/patients/{pid}/documents/{doc.id}", headers=_patient(settings, pid))  # allowed
    client.get(f"/v1/patients/{pid}/documents/{doc.id}", headers=_token(settings, "bank-1", "bank"))  # denied
    client.get(f"/v1/patients/{pid}/documents/nope", headers=_patient(settings, pid))  # not found
    with rt.sessions() as session:
        after = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.chain == pid))
        assert verify(session, audit_key(rt.hmac_secret)) == []
    assert after - before == 3


def test_a_closed_record_is_readable_by_nobody(world):
    settings, _, client, patients, _ = world
    pid = patients[1]
    assert client.post(f"/v1/patients/{pid}/close", headers=_patient(settings, pid)).status_code == 200
    response = client.get(f"/v1/patients/{pid}/documents", headers=_patient(settings, pid))
    assert (response.status_code, response.json()["code"]) == (403, "record_closed")


def test_an_emergency_access_and_a_first_access_notify_the_patient(world):
    from pipeline.index.models import Outbox

    settings, rt, client, patients, documents = world
    pid = patients[0]
    doc = _docs_of(documents, pid)[0]
    client.put(f"/v1/patients/{pid}/attending-physician", json={"physician_id": "10000000009"}, headers=_patient(settings, pid))
    headers = {**_doctor(settings, "10000000888"), "X-Emergency-Reason": "cardiac arrest in the street"}
    assert client.get(f"/v1/patients/{pid}/documents/{doc.id}", headers=headers).status_code == 200
    client.get(f"/v1/patients/{pid}/documents/{doc.id}", headers=headers)
    with rt.sessions() as session:
        kinds = [
            row.kind for row in session.scalars(select(Outbox).where(Outbox.patient_id == pid, Outbox.source == "professional:10000000888"))
        ]
    assert kinds.count("emergency_access") == 2  # every emergency access
    assert kinds.count("emergency_access_to_attending") == 2
    assert kinds.count("first_access") == 1  # once per professional


def test_the_patient_exports_the_whole_record_as_a_zip_with_an_index(world):
    import io
    import json
    import zipfile

    settings, rt, client, patients, documents = world
    pid = patients[0]
    response = client.get(f"/v1/patients/{pid}/export", headers=_patient(settings, pid))
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    index = json.loads(archive.read("index.json"))["documents"]
    mine = {d.id: d for d in _docs_of(documents, pid)}
    assert {entry["id"] for entry in index} == set(mine)
    for entry in index:
        assert archive.read(entry["file"]) == b"".join(read_document(rt, mine[entry["id"]]))


def test_a_professional_cannot_export_the_record(world):
    settings, _, client, patients, _ = world
    assert client.get(f"/v1/patients/{patients[0]}/export", headers=_doctor(settings)).status_code == 403


def test_a_legal_representative_reads_the_record_except_what_the_patient_hid_from_them(world):
    from pipeline.access.representatives import add_representative
    from pipeline.index.models import Patient

    settings, rt, client, patients, documents = world
    pid = patients[0]  # the other record is closed by another test of this module
    with rt.sessions() as session:
        add_representative(session, session.get(Patient, pid).ins, "parent-1")
    parent, patient = _token(settings, "parent-1", "legal_representative"), _patient(settings, pid)
    hidden = _docs_of(documents, pid)[0]

    def seen_by_parent() -> set[str]:
        return {d["id"] for d in client.get(f"/v1/patients/{pid}/documents", headers=parent).json()["items"]}

    assert seen_by_parent() == {d.id for d in _docs_of(documents, pid)}
    assert client.post(f"/v1/patients/{pid}/documents/{hidden.id}/hide-from-representatives", headers=parent).status_code == 403
    assert client.post(f"/v1/patients/{pid}/documents/{hidden.id}/hide-from-representatives", headers=patient).status_code == 200
    assert hidden.id not in seen_by_parent()
    assert client.get(f"/v1/patients/{pid}/documents/{hidden.id}/content", headers=parent).status_code == 404
    assert client.get(f"/v1/patients/{pid}/documents/{hidden.id}", headers=patient).status_code == 200
    assert client.post(f"/v1/patients/{pid}/documents/{hidden.id}/show-to-representatives", headers=patient).status_code == 200
    assert hidden.id in seen_by_parent()


def test_someone_not_registered_as_representative_reads_nothing(world):
    settings, _, client, patients, _ = world
    stranger = _token(settings, "not-a-parent", "legal_representative")
    assert client.get(f"/v1/patients/{patients[0]}/documents", headers=stranger).status_code == 404
