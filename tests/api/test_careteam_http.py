"""The care team over time through HTTP, on SQLite and PostgreSQL (docs/domain.md, "Finding a record, and the care
team over time", "Who may read", "What the patient controls"): the author reads, the blocked author does not;
declared consent; a facility authorized for a stay and its end; the attending physician's handover; the
patient's opposition; an occupational physician's express consent; the operator's minor status and representatives."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from pipeline.index.models import Patient
from tests.api.careteam_world import Api, add_document, add_patient, new_ins

AUTHOR = "10001111111"
DR = "10002222222"
SUCCESSOR = "10003333333"
FINESS = "750000001"


@pytest.fixture
def api(rt):
    with TestClient(create_app(rt.settings)) as client:
        yield Api(rt, client)


@pytest.fixture
def record(api):
    """A record with one consultation report authored by AUTHOR: (patient id, document id, INS)."""
    ins = new_ins(1)
    pid = add_patient(api.rt, ins)
    return pid, add_document(api.rt, pid, author_id=AUTHOR), ins


def _read(api: Api, pid: str, doc: str, headers: dict[str, str]):
    response = api.client.get(f"/v1/patients/{pid}/documents/{doc}", headers=headers)
    return response.status_code, response.json().get("code")


def _post(api: Api, path: str, headers: dict[str, str], body: object = None):
    return api.client.post(path, headers=headers, json=body)


def _moment(delta: dt.timedelta) -> str:
    return (dt.datetime.now(dt.UTC) + delta).isoformat()


# --- the author -------------------------------------------------------------------------------


def test_the_author_of_a_document_in_the_record_reads_the_record(api, record):
    pid, doc, _ = record
    other = add_document(api.rt, pid, author_id="someone-else", class_code="11", type_code="60591-5")
    assert _read(api, pid, doc, api.pro(AUTHOR)) == (200, None)
    assert _read(api, pid, other, api.pro(AUTHOR)) == (200, None)
    assert [e.reason for e in api.entries(pid)] == ["treated_patient", "treated_patient"]


def test_the_author_the_patient_blocked_is_refused(api, record):
    pid, doc, _ = record
    assert _post(api, f"/v1/patients/{pid}/professionals/{AUTHOR}/block", api.patient(pid)).status_code == 200
    assert _read(api, pid, doc, api.pro(AUTHOR)) == (403, "blocked")


def test_a_professional_who_authored_nothing_is_not_in_the_care_team(api, record):
    pid, doc, _ = record
    assert _read(api, pid, doc, api.pro(DR)) == (403, "not_in_care_team")


# --- declared consent ---------------------------------------------------------------------------


def test_a_professional_declaring_the_patients_consent_then_reads(api, record):
    pid, doc, _ = record
    assert _post(api, f"/v1/patients/{pid}/consent", api.pro(DR), {}).status_code == 200
    assert _read(api, pid, doc, api.pro(DR)) == (200, None)


def test_a_declared_consent_is_in_the_patients_access_log_and_care_team(api, record):
    pid, _, _ = record
    _post(api, f"/v1/patients/{pid}/consent", api.pro(DR), {})
    log = api.client.get(f"/v1/patients/{pid}/access-log", headers=api.patient(pid)).json()
    assert [(e["actor_id"], e["action"], e["outcome"], e["reason"]) for e in log][0] == (
        DR,
        "declare_consent",
        "allowed",
        "declared_consent",
    )
    team = api.client.get(f"/v1/patients/{pid}/care-team", headers=api.patient(pid)).json()
    assert [(m["actor_id"], m["relation"], m["granted_by"], m["in_force"]) for m in team["members"]] == [(DR, "declared_consent", DR, True)]
    assert team["authors"] == [AUTHOR]


def test_the_patient_revokes_a_declared_consent(api, record):
    pid, doc, _ = record
    _post(api, f"/v1/patients/{pid}/consent", api.pro(DR), {})
    assert api.client.delete(f"/v1/patients/{pid}/consents/{DR}", headers=api.patient(pid)).status_code == 200
    assert _read(api, pid, doc, api.pro(DR)) == (403, "not_in_care_team")


def test_a_blocked_professional_cannot_declare_consent(api, record):
    pid, _, _ = record
    _post(api, f"/v1/patients/{pid}/professionals/{DR}/block", api.patient(pid))
    response = _post(api, f"/v1/patients/{pid}/consent", api.pro(DR), {})
    assert (response.status_code, response.json()["code"]) == (403, "blocked")


def test_only_a_professional_declares_consent(api, record):
    pid, _, _ = record
    response = _post(api, f"/v1/patients/{pid}/consent", api.patient(pid), {})
    assert (response.status_code, response.json()["code"]) == (403, "not_allowed")


def test_a_declared_consent_ends_at_its_end(api, record):
    pid, doc, _ = record
    _post(api, f"/v1/patients/{pid}/consent", api.pro(DR), {"until": _moment(-dt.timedelta(seconds=1))})
    assert _read(api, pid, doc, api.pro(DR)) == (403, "not_in_care_team")


# --- a facility for a stay, authorizations that end ---------------------------------------------


def test_a_facility_authorized_for_a_stay_lets_its_professionals_read(api, record):
    pid, doc, _ = record
    response = api.client.put(
        f"/v1/patients/{pid}/facilities/{FINESS}", headers=api.patient(pid), json={"until": _moment(dt.timedelta(days=3))}
    )
    assert response.status_code == 200
    assert _read(api, pid, doc, api.pro(DR, facility_id=f"hospital:{FINESS}")) == (200, None)
    assert _read(api, pid, doc, api.pro(DR, facility_id="hospital:750000002")) == (403, "not_in_care_team")
    assert [e.reason for e in api.entries(pid) if e.action == "read_metadata"][0] == "facility_authorized"


def test_a_facilitys_authorization_after_its_end_lets_nobody_read(api, record):
    pid, doc, _ = record
    api.client.put(f"/v1/patients/{pid}/facilities/{FINESS}", headers=api.patient(pid), json={"until": _moment(-dt.timedelta(seconds=1))})
    assert _read(api, pid, doc, api.pro(DR, facility_id=FINESS)) == (403, "not_in_care_team")


def test_a_facility_authorization_needs_an_end_and_a_finess(api, record):
    pid, _, _ = record
    assert api.client.put(f"/v1/patients/{pid}/facilities/{FINESS}", headers=api.patient(pid), json={}).status_code == 422
    bad = api.client.put(f"/v1/patients/{pid}/facilities/CHU", headers=api.patient(pid), json={"until": _moment(dt.timedelta(days=1))})
    assert bad.status_code == 422


def test_an_end_without_an_offset_or_beyond_what_utc_holds_is_422(api, record):
    pid, _, _ = record
    path = f"/v1/patients/{pid}/facilities/{FINESS}"
    for until in ("2030-01-01T00:00:00", "9999-12-31T23:59:59-23:59", 0, 1900000000):
        response = api.client.put(path, headers=api.patient(pid), json={"until": until})
        assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), until


def test_an_authorization_with_an_end_reads_before_it_and_not_after(api, record):
    pid, doc, _ = record
    path = f"/v1/patients/{pid}/professionals/{DR}/authorize"
    _post(api, path, api.patient(pid), {"until": _moment(dt.timedelta(hours=1))})
    assert _read(api, pid, doc, api.pro(DR)) == (200, None)
    _post(api, path, api.patient(pid), {"until": _moment(-dt.timedelta(seconds=1))})
    assert _read(api, pid, doc, api.pro(DR)) == (403, "not_in_care_team")


# --- the attending physician's handover ----------------------------------------------------------


def _attending(api: Api, pid: str, physician: str) -> None:
    assert (
        api.client.put(f"/v1/patients/{pid}/attending-physician", headers=api.patient(pid), json={"physician_id": physician}).status_code
        == 200
    )


def test_the_attending_physician_hands_over_to_an_authorized_physician_with_the_patients_agreement(api, record):
    pid, _, ins = record
    _attending(api, pid, DR)
    _post(api, f"/v1/patients/{pid}/professionals/{SUCCESSOR}/authorize", api.patient(pid))
    assert _post(api, f"/v1/patients/{pid}/attending-physician/transfer", api.pro(DR), {"physician_id": SUCCESSOR}).status_code == 200
    accepted = _post(api, f"/v1/patients/{pid}/attending-physician/transfer/accept", api.patient(pid))
    assert accepted.json() == {"attending_physician": SUCCESSOR}
    lookup = _post(api, "/v1/records/lookup", api.pro(SUCCESSOR), {"ins": ins}).json()
    assert lookup["attending_physician"] is True
    assert _post(api, "/v1/records/lookup", api.pro(DR), {"ins": ins}).json()["attending_physician"] is False


def test_the_handover_is_refused_to_a_physician_outside_the_care_team(api, record):
    pid, _, _ = record
    _attending(api, pid, DR)
    response = _post(api, f"/v1/patients/{pid}/attending-physician/transfer", api.pro(DR), {"physician_id": SUCCESSOR})
    assert (response.status_code, response.json()["code"]) == (409, "not_in_care_team")


def test_only_the_attending_physician_proposes_a_handover(api, record):
    pid, _, _ = record
    _attending(api, pid, DR)
    response = _post(api, f"/v1/patients/{pid}/attending-physician/transfer", api.pro(AUTHOR), {"physician_id": AUTHOR})
    assert (response.status_code, response.json()["code"]) == (403, "not_allowed")


def test_the_patient_cannot_accept_a_handover_nobody_proposed(api, record):
    pid, _, _ = record
    response = _post(api, f"/v1/patients/{pid}/attending-physician/transfer/accept", api.patient(pid))
    assert (response.status_code, response.json()["code"]) == (409, "no_transfer_pending")


def test_only_the_patient_agrees_to_a_handover(api, record):
    pid, _, _ = record
    _attending(api, pid, DR)
    _post(api, f"/v1/patients/{pid}/attending-physician/transfer", api.pro(DR), {"physician_id": AUTHOR})
    response = _post(api, f"/v1/patients/{pid}/attending-physician/transfer/accept", api.pro(DR))
    assert (response.status_code, response.json()["code"]) == (403, "not_allowed")


# --- opposition ---------------------------------------------------------------------------------------


def test_an_opposed_record_is_read_by_nobody_until_the_patient_lifts_the_opposition(api, record):
    pid, doc, ins = record
    assert api.client.put(f"/v1/patients/{pid}/opposition", headers=api.patient(pid), json={"opposed": True}).status_code == 200
    assert _read(api, pid, doc, api.pro(AUTHOR)) == (403, "record_opposed")
    assert _read(api, pid, doc, api.patient(pid)) == (403, "record_opposed")
    assert _post(api, "/v1/records/lookup", api.pro(AUTHOR), {"ins": ins}).json()["status"] == "opposed"
    assert api.client.put(f"/v1/patients/{pid}/opposition", headers=api.patient(pid), json={"opposed": False}).status_code == 200
    assert _read(api, pid, doc, api.pro(AUTHOR)) == (200, None)


def test_a_professional_cannot_oppose_the_record(api, record):
    pid, _, _ = record
    response = api.client.put(f"/v1/patients/{pid}/opposition", headers=api.pro(AUTHOR), json={"opposed": True})
    assert (response.status_code, response.json()["code"]) == (403, "not_allowed")


def test_an_opposed_record_accepts_no_deposit(api, record, tmp_path):
    from pipeline.samples import generate_samples
    from tests.conftest import index_batch

    generate_samples(tmp_path / "batch", patients=1, documents=2, seed=5, bad=False)
    rows = (tmp_path / "batch" / "manifest.csv").read_text(encoding="utf-8").splitlines()
    ins = rows[1].split(",")[rows[0].split(",").index("patient_ins")]
    pid = add_patient(api.rt, ins)
    api.client.put(f"/v1/patients/{pid}/opposition", headers=api.patient(pid), json={"opposed": True})
    assert [d for d in index_batch(api.rt, tmp_path / "batch", "hospital:H2") if d.patient_id == pid] == []


# --- an occupational physician's express consent ------------------------------------------------------


def test_an_occupational_physician_reads_only_with_the_patients_express_consent(api, record):
    pid, doc, _ = record
    occupational = api.token("occ-1", "occupational_physician")
    assert _read(api, pid, doc, occupational) == (404, "not_found")
    path = f"/v1/patients/{pid}/occupational-physicians/occ-1/consent"
    assert api.client.put(path, headers=api.patient(pid), json={"consent": True}).status_code == 200
    assert _read(api, pid, doc, occupational) == (200, None)
    api.client.put(path, headers=api.patient(pid), json={"consent": False})
    assert _read(api, pid, doc, occupational) == (404, "not_found")


# --- the operator: minor status and representatives -------------------------------------------------


def test_the_operator_sets_the_minor_status(api, record):
    pid, _, ins = record
    assert api.client.put("/v1/records/minor", headers=api.token("op-1", "operator"), json={"ins": ins, "minor": True}).status_code == 200
    with api.rt.sessions() as session:
        assert session.scalar(select(Patient.is_minor).where(Patient.id == pid)) is True


def test_the_operator_registers_and_withdraws_a_representative(api, record):
    pid, doc, ins = record
    parent = api.token("parent-1", "legal_representative")
    body = {"ins": ins, "representative_id": "parent-1", "registered": True}
    assert api.client.put("/v1/records/representatives", headers=api.token("op-1", "operator"), json=body).status_code == 200
    assert _read(api, pid, doc, parent) == (200, None)
    api.client.put("/v1/records/representatives", headers=api.token("op-1", "operator"), json={**body, "registered": False})
    assert _read(api, pid, doc, parent) == (404, "not_found")
    assert [(e.actor_id, e.action) for e in api.entries(pid) if e.actor_kind == "operator"] == [
        ("op-1", "set_representative"),
        ("op-1", "set_representative"),
    ]


@pytest.mark.parametrize("kind", ["patient", "legal_representative", "professional", "employer"])
def test_nobody_but_the_operator_sets_representatives_and_the_answer_tells_nothing(api, record, kind):
    pid, _, ins = record
    headers = api.pro("x-1") if kind == "professional" else api.token(pid if kind == "patient" else "x-1", kind)
    answers = set()
    for target in (ins, new_ins(99)):
        response = api.client.put(
            "/v1/records/representatives", headers=headers, json={"ins": target, "representative_id": "x-1", "registered": True}
        )
        answers.add((response.status_code, response.content))
    assert len(answers) == 1 and next(iter(answers))[0] == 404
    with api.rt.sessions() as session:
        assert session.scalar(select(Patient.id).where(Patient.ins == new_ins(99))) is None
