"""POST /v1/records/lookup through HTTP, on SQLite and PostgreSQL: finding a record by INS, for each actor kind,
with no existence oracle, every lookup audited (docs/domain.md, "Finding a record, and the care team over time")."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from pipeline.core.identity import INS_OID_NIA, INS_OID_TEST
from pipeline.index.models import Patient, RecordRelation
from tests.api.careteam_world import Api, add_patient, new_ins

DR = "10001234567"


@pytest.fixture
def api(rt):
    with TestClient(create_app(rt.settings)) as client:
        yield Api(rt, client)


def _lookup(api: Api, headers: dict[str, str], ins: str, **extra: str):
    return api.client.post("/v1/records/lookup", headers=headers, json={"ins": ins, **extra})


def _authorize(api: Api, pid: str, professional: str) -> None:
    assert api.client.post(f"/v1/patients/{pid}/professionals/{professional}/authorize", headers=api.patient(pid)).status_code == 200


def test_a_professional_in_the_care_team_finds_the_open_record_and_may_read_it(api):
    ins = new_ins(1)
    pid = add_patient(api.rt, ins)
    _authorize(api, pid, DR)
    response = _lookup(api, api.pro(DR), ins)
    assert response.status_code == 200
    assert response.json() == {"record": pid, "status": "open", "access": {"allowed": True, "reason": None}, "attending_physician": False}


def test_a_professional_outside_the_care_team_is_told_why_not(api):
    ins = new_ins(2)
    pid = add_patient(api.rt, ins)
    body = _lookup(api, api.pro(DR), ins).json()
    assert (body["record"], body["status"], body["attending_physician"]) == (pid, "open", False)
    assert body["access"] == {"allowed": False, "reason": "not_in_care_team"}


def test_the_attending_physician_is_told_so(api):
    ins = new_ins(3)
    pid = add_patient(api.rt, ins)
    with api.rt.sessions.begin() as session:
        session.execute(update(Patient).where(Patient.id == pid).values(attending_physician_id=DR))
    body = _lookup(api, api.pro(DR), ins).json()
    assert (body["attending_physician"], body["access"]) == (True, {"allowed": True, "reason": None})


@pytest.mark.parametrize(("status", "reason"), [("closed", "record_closed"), ("opposed", "record_opposed")])
def test_a_closed_or_opposed_record_is_found_with_its_status_and_not_readable(api, status, reason):
    ins = new_ins(4)
    pid = add_patient(api.rt, ins, status=status)
    body = _lookup(api, api.pro(DR), ins).json()
    assert body == {"record": pid, "status": status, "access": {"allowed": False, "reason": reason}, "attending_physician": False}


def test_an_ins_without_a_record_answers_no_record(api):
    body = _lookup(api, api.pro(DR), new_ins(5)).json()
    assert body == {"record": None, "status": None, "access": {"allowed": False, "reason": "not_found"}, "attending_physician": False}


@pytest.mark.parametrize("oid", [None, "1.2.250.1.213.1.4.8", INS_OID_NIA, INS_OID_TEST])
def test_the_ins_is_accepted_under_every_oid_the_domain_lists_and_with_spaces(api, oid):
    ins = new_ins(6)
    pid = add_patient(api.rt, ins)
    spaced = f"{ins[0]} {ins[1:3]} {ins[3:5]} {ins[5:7]} {ins[7:10]} {ins[10:13]} {ins[13:]}"
    body = _lookup(api, api.pro(DR), spaced, **({"oid": oid} if oid else {})).json()
    assert body["record"] == pid


def test_an_oid_the_domain_does_not_list_is_422(api):
    response = _lookup(api, api.pro(DR), new_ins(7), oid="1.2.3.4")
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


@pytest.mark.parametrize("ins", ["180017500000100", "not-an-ins", ""])
def test_a_malformed_ins_or_a_wrong_key_is_422_invalid_ins_and_audited_without_it(api, ins):
    response = _lookup(api, api.pro(DR), ins)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_ins")
    assert [(e.actor_id, e.action, e.outcome, e.told_reason) for e in api.entries("-")] == [(DR, "lookup", "denied", "invalid_ins")]


# Actors who may not learn that a record exists (docs/domain.md rule 6, no existence oracle).
KEPT_IN_THE_DARK = [
    ("employer-1", "employer", {}),
    ("insurer-1", "insurer", {}),
    ("mutuelle-1", "mutuelle", {}),
    ("bank-1", "bank", {}),
    ("clerk-1", "administrative", {}),
    ("occupational-1", "occupational_physician", {}),
    ("operator-1", "operator", {}),
    ("someone-else", "patient", {}),
    ("parent-1", "legal_representative", {}),
]


@pytest.mark.parametrize(("subject", "kind", "claims"), KEPT_IN_THE_DARK, ids=[k for _, k, _ in KEPT_IN_THE_DARK])
def test_an_actor_who_may_not_learn_it_gets_one_answer_whether_the_record_exists_or_not(api, subject, kind, claims):
    answers = set()
    for n, status in enumerate(("open", "closed", "opposed")):
        ins = new_ins(10 + n)
        pid = add_patient(api.rt, ins, status=status)
        # Even authorized as a professional would be, an employer learns nothing (rule 6).
        with api.rt.sessions.begin() as session:
            session.add(RecordRelation(patient_id=pid, actor_id=subject, relation="authorized"))
        response = _lookup(api, api.token(subject, kind, **claims), ins)
        answers.add((response.status_code, response.headers["content-type"], response.content))
    missing = _lookup(api, api.token(subject, kind, **claims), new_ins(20))
    answers.add((missing.status_code, missing.headers["content-type"], missing.content))
    assert len(answers) == 1
    assert missing.json()["record"] is None


def test_a_professionals_lookup_is_in_the_patients_access_log(api):
    ins = new_ins(30)
    pid = add_patient(api.rt, ins)
    _lookup(api, api.pro(DR), ins)
    log = api.client.get(f"/v1/patients/{pid}/access-log", headers=api.patient(pid)).json()
    assert [(e["actor_id"], e["action"], e["outcome"], e["reason"]) for e in log if e["action"] == "lookup"] == [
        (DR, "lookup", "denied", "not_in_care_team")
    ]


def test_a_forbidden_partys_lookup_is_audited_in_the_records_chain_with_the_answer_it_got(api):
    ins = new_ins(31)
    pid = add_patient(api.rt, ins)
    _lookup(api, api.token("employer-1", "employer"), ins)
    assert [(e.actor_id, e.action, e.reason, e.told_reason) for e in api.entries(pid)] == [
        ("employer-1", "lookup", "forbidden_party", "not_found")
    ]


def test_a_lookup_of_an_ins_without_a_record_is_audited_in_the_no_patient_chain(api):
    _lookup(api, api.pro(DR), new_ins(32))
    assert [(e.actor_id, e.action, e.outcome, e.reason) for e in api.entries("-")] == [(DR, "lookup", "denied", "not_found")]
