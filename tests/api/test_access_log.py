"""The access log (`GET /v1/patients/{id}/access-log`): each reader sees only the entries about what they may see.

docs/domain.md, "Traceability" and "Who may read" (no existence oracle): documents hidden from a reader (held until their announcement,
hidden from the representatives, masked, outside the matrix) leave no trace for them, neither entry nor page; a
denied reader reads back no more than their 404 said; a minor's own accesses are invisible to the
representatives; the break-glass justification is for the patient and the attending physician.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from pipeline.access.audit import verify
from pipeline.access.representatives import add_representative
from pipeline.access.tokens import mint_token
from pipeline.core.clock import paris_date
from pipeline.core.keys import KeyProviderError
from pipeline.core.settings import Settings
from pipeline.documents.stored import destroy_record
from pipeline.index.models import AuditEntry, Document, Patient
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.conftest import index_batch, raw_dump

pytestmark = pytest.mark.slow  # seeded records read back through the API

SOURCE = "hospital:CHU-LOG"
ATTENDING = "10000000009"
EMERGENCY = "cardiac arrest in the street"
RESCUER = "10000000891"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An embedded deployment with six patients' documents deposited (each test takes its own patient)."""
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("access-log")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=6, documents=60, seed=13, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    documents = index_batch(rt, root / "batch", SOURCE)
    by_patient: dict[str, list[Document]] = {}
    for document in documents:
        by_patient.setdefault(document.patient_id, []).append(document)
    patients = sorted(by_patient, key=lambda pid: -len(by_patient[pid]))
    with TestClient(create_app(settings)) as client:
        yield settings, rt, client, patients, by_patient
    rt.close()


def _headers(settings: Settings, sub: str, kind: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub, kind, **claims)}"}


def _professional(settings: Settings, rpps: str, profession: str = "physician") -> dict[str, str]:
    return _headers(settings, rpps, "professional", profession=profession, rpps=rpps)


def _log(client: TestClient, pid: str, headers: dict[str, str], **params: int) -> list[dict]:
    """The access log as `headers` reads it, without the entries its readings themselves added."""
    return [e for e in _page(client, pid, headers, limit=1000, **params) if e["action"] != "read_access_log"]


def _page(client: TestClient, pid: str, headers: dict[str, str], **params: int) -> list[dict]:
    response = client.get(f"/v1/patients/{pid}/access-log", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _about(entries: list[dict], document_id: str) -> list[tuple[str, str, str, str]]:
    return [(e["actor_id"], e["action"], e["outcome"], e["reason"]) for e in entries if e["document_id"] == document_id]


def _as_answered(entry: dict) -> tuple:
    """An entry without what differs between two probes anyway (time, the id asked for)."""
    return (entry["actor_id"], entry["actor_kind"], entry["action"], entry["outcome"], entry["reason"], entry["emergency"])


def _with_representative(rt: Runtime, pid: str, settings: Settings) -> dict[str, str]:
    with rt.sessions() as session:
        ins = session.get(Patient, pid).ins
        add_representative(session, ins, f"parent-of-{pid[:8]}")
    return _headers(settings, f"parent-of-{pid[:8]}", "legal_representative")


def _update_document(rt: Runtime, document_id: str, **values: object) -> None:
    with rt.sessions.begin() as session:
        session.execute(update(Document).where(Document.id == document_id).values(**values))


def test_a_representative_sees_no_trace_of_a_document_hidden_from_them(world):
    settings, rt, client, patients, documents = world
    pid = patients[0]
    patient, parent = _headers(settings, pid, "patient"), _with_representative(rt, pid, settings)
    hidden = documents[pid][0].id
    assert client.post(f"/v1/patients/{pid}/documents/{hidden}/hide-from-representatives", headers=patient).status_code == 200
    probe, random_probe = (client.get(f"/v1/patients/{pid}/documents/{doc}", headers=parent) for doc in (hidden, str(uuid.uuid4())))
    assert probe.status_code == random_probe.status_code == 404

    seen = _log(client, pid, parent)
    assert [(e["actor_kind"], e["action"]) for e in seen if e["document_id"] == hidden] == [("legal_representative", "read_metadata")]
    assert "hidden_from_representative" not in {e["reason"] for e in seen}
    assert "hide_from_representatives" not in {e["action"] for e in seen}
    own = [_as_answered(e) for e in seen if e["actor_kind"] == "legal_representative"]
    assert own[-2] == own[-1]  # the probe of the hidden document reads like the probe of an id that is nothing
    assert own[-1][3:5] == ("denied", "not_found")
    # The chain keeps it all for the patient.
    assert _about(_log(client, pid, patient), hidden) == [
        (SOURCE, "deposit", "allowed", "indexed"),
        (pid, "hide_from_representatives", "allowed", "patient"),
        (f"parent-of-{pid[:8]}", "read_metadata", "denied", "hidden_from_representative"),
    ]


def test_a_representative_does_not_see_the_accesses_the_patient_makes(world):
    settings, rt, client, patients, documents = world
    pid = patients[1]
    patient, parent = _headers(settings, pid, "patient"), _with_representative(rt, pid, settings)
    assert client.get(f"/v1/patients/{pid}/documents/{documents[pid][0].id}", headers=patient).status_code == 200
    assert client.get(f"/v1/patients/{pid}/documents", headers=parent).status_code == 200
    assert pid in {e["actor_id"] for e in _log(client, pid, patient)}
    seen = _log(client, pid, parent)
    assert "patient" not in {e["actor_kind"] for e in seen}
    assert {e["action"] for e in seen} == {"deposit", "list"}


def test_the_patient_sees_no_deposit_of_a_result_held_until_its_announcement_before_it(world):
    settings, rt, client, patients, documents = world
    pid = patients[2]
    patient, parent = _headers(settings, pid, "patient"), _with_representative(rt, pid, settings)
    held = documents[pid][0].id
    _update_document(rt, held, hidden_from_patient_until=paris_date() + dt.timedelta(days=10))
    assert client.get(f"/v1/patients/{pid}/documents/{held}", headers=patient).status_code == 404

    assert [(actor, reason) for actor, _, _, reason in _about(_log(client, pid, patient), held)] == [(pid, "not_found")]
    assert _about(_log(client, pid, parent), held) == []
    _update_document(rt, held, hidden_from_patient_until=paris_date() - dt.timedelta(days=1))  # the consultation took place
    assert _about(_log(client, pid, patient), held)[0] == (SOURCE, "deposit", "allowed", "indexed")


@pytest.mark.parametrize(
    ("profession", "hide"),
    [
        ("physician", {"masked": True}),
        ("dentist", {"class_code": "90", "type_code": "EXPPAT_3"}),  # docs/domain.md rule 7: no advance directives for a dentist
    ],
    ids=["masked", "outside-the-matrix"],
)
def test_a_professional_refused_with_a_404_reads_back_not_found_while_the_patient_reads_why(world, profession, hide):
    settings, rt, client, patients, documents = world
    pid = patients[3]
    rpps = f"1000{len(profession):03d}{profession[:4]}"
    pro, patient = _professional(settings, rpps, profession), _headers(settings, pid, "patient")
    assert client.post(f"/v1/patients/{pid}/professionals/{rpps}/authorize", headers=patient).status_code == 200
    concealed = documents[pid][1].id
    _update_document(rt, concealed, **hide)
    assert client.get(f"/v1/patients/{pid}/documents/{concealed}", headers=pro).status_code == 404
    assert client.get(f"/v1/patients/{pid}/documents/{uuid.uuid4()}", headers=pro).status_code == 404

    own = _log(client, pid, pro)
    assert [_as_answered(e) for e in own[-2:]] == [(rpps, "professional", "read_metadata", "denied", "not_found", False)] * 2
    real = "masked" if "masked" in hide else "matrix_forbids"
    assert _about(_log(client, pid, patient), concealed)[-1] == (rpps, "read_metadata", "denied", real)
    with rt.sessions.begin() as session:
        session.execute(update(Patient).where(Patient.id == pid).values(attending_physician_id=ATTENDING))
    assert _about(_log(client, pid, _professional(settings, ATTENDING)), concealed)[-1] == (rpps, "read_metadata", "denied", real)


def test_paging_a_filtered_log_leaves_no_gap(world):
    settings, rt, client, patients, documents = world
    pid = patients[4]
    patient, parent = _headers(settings, pid, "patient"), _with_representative(rt, pid, settings)
    hidden = {document.id for document in documents[pid][::2]}
    for document_id in hidden:
        client.post(f"/v1/patients/{pid}/documents/{document_id}/hide-from-representatives", headers=patient)
    pages = [_page(client, pid, parent, limit=2, offset=0)]
    while pages[-1]:  # each reading adds one entry at the end; the pages outrun them two by two
        pages.append(_page(client, pid, parent, limit=2, offset=2 * len(pages)))
    read = [entry for page in pages for entry in page]
    everything = _page(client, pid, parent, limit=1000)
    assert [len(page) for page in pages[:-2]] == [2] * (len(pages) - 2)  # no short page before the end
    assert read == everything[: len(read)]
    assert {e["action"] for e in everything[len(read) :]} == {"read_access_log"}  # the readings since
    assert not hidden & {e["document_id"] for e in everything}
    assert len([e for e in everything if e["action"] == "deposit"]) == len(documents[pid]) - len(hidden) > 2


def test_the_break_glass_justification_is_shown_to_the_patient_and_the_attending_physician_only(world):
    settings, rt, client, patients, documents = world
    pid = patients[5]
    patient, parent = _headers(settings, pid, "patient"), _with_representative(rt, pid, settings)
    client.put(f"/v1/patients/{pid}/attending-physician", json={"physician_id": ATTENDING}, headers=patient)
    emergency_physician = _professional(settings, "10000000888")
    url = f"/v1/patients/{pid}/documents/{documents[pid][0].id}"
    assert client.get(url, headers={**emergency_physician, "X-Emergency-Reason": EMERGENCY}).status_code == 200

    def justification(headers: dict[str, str]) -> list[str | None]:
        return [e["justification"] for e in _log(client, pid, headers) if e["actor_id"] == "10000000888"]

    assert justification(patient) == justification(_professional(settings, ATTENDING)) == [EMERGENCY]
    assert justification(emergency_physician) == justification(parent) == [None]
    with rt.sessions() as session:
        assert verify(session, rt.audit_key, pid) == []


def test_an_emergency_reason_too_long_to_keep_is_refused_before_any_access(world):
    settings, _, client, patients, documents = world
    pid = patients[5]
    headers = {**_professional(settings, "10000000889"), "X-Emergency-Reason": "x" * 1001}
    response = client.get(f"/v1/patients/{pid}/documents/{documents[pid][0].id}", headers=headers)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


def test_an_emergency_reason_sent_in_utf_8_is_kept_as_written(world):
    settings, rt, client, patients, documents = world
    pid = patients[5]
    headers = {**_professional(settings, "10000000890"), "X-Emergency-Reason": "arrêt cardiaque, réanimation".encode()}
    assert client.get(f"/v1/patients/{pid}/documents/{documents[pid][1].id}", headers=headers).status_code == 200
    entries = _log(client, pid, _headers(settings, pid, "patient"))
    assert [e["justification"] for e in entries if e["actor_id"] == "10000000890"] == ["arrêt cardiaque, réanimation"]


@pytest.fixture
def break_glass(rt, tmp_path):
    """One record, on SQLite and on PostgreSQL, read once under break-glass with a telling justification."""
    generate_samples(tmp_path / "batch", patients=1, documents=2, seed=21, bad=False)
    document = index_batch(rt, tmp_path / "batch", SOURCE)[0]
    pid = document.patient_id
    with TestClient(create_app(rt.settings)) as client:
        headers = {**_professional(rt.settings, RESCUER), "X-Emergency-Reason": "arrêt cardiaque, patient inconscient".encode()}
        assert client.get(f"/v1/patients/{pid}/documents/{document.id}", headers=headers).status_code == 200
        yield rt, client, pid


def _justifications_read_by_the_patient(client: TestClient, rt: Runtime, pid: str) -> list[str | None]:
    return [e["justification"] for e in _log(client, pid, _headers(rt.settings, pid, "patient")) if e["actor_id"] == RESCUER]


def test_a_dump_of_the_index_holds_no_break_glass_justification_in_clear(break_glass):
    rt, client, pid = break_glass
    assert _justifications_read_by_the_patient(client, rt, pid) == ["arrêt cardiaque, patient inconscient"]  # it is kept
    dump = raw_dump(rt.engine)
    assert b"inconscient" not in dump and "arrêt".encode() not in dump


def test_a_destroyed_records_chain_still_verifies_and_its_justification_opens_no_more(break_glass):
    rt, client, pid = break_glass
    destroy_record(rt, pid)
    assert _justifications_read_by_the_patient(client, rt, pid) == [None]
    with rt.sessions() as session:
        assert verify(session, rt.audit_key, pid) == []  # no record key needed
        assert session.scalars(select(AuditEntry.justification_sealed).where(AuditEntry.actor_id == RESCUER)).one() is not None


def test_reading_the_log_unwraps_the_record_key_once_and_only_for_who_sees_the_justifications(break_glass, monkeypatch):
    rt, client, pid = break_glass
    rescuer = {**_professional(rt.settings, RESCUER), "X-Emergency-Reason": "polytraumatisé".encode()}
    assert client.get(f"/v1/patients/{pid}/documents", headers=rescuer).status_code == 200
    served: Runtime = client.app.state.runtime
    unwraps: list[str] = []
    unwrap = served.keys.unwrap
    monkeypatch.setattr(served.keys, "unwrap", lambda wrapped, context: unwraps.append(context) or unwrap(wrapped, context))
    served.record_keys._cache.clear()
    assert [e["justification"] for e in _log(client, pid, _professional(rt.settings, RESCUER))] == [None, None]
    assert unwraps == []
    assert _justifications_read_by_the_patient(client, rt, pid) == ["arrêt cardiaque, patient inconscient", "polytraumatisé"]
    assert len(unwraps) == 1


def test_an_attempt_is_audited_without_its_justification_when_the_record_key_is_out_of_reach(break_glass, monkeypatch):
    rt, client, pid = break_glass
    served: Runtime = client.app.state.runtime

    def unreachable(wrapped, context):  # type: ignore[no-untyped-def]
        raise KeyProviderError("master key out of reach")

    monkeypatch.setattr(served.keys, "unwrap", unreachable)
    served.record_keys._cache.clear()
    bank = {**_headers(rt.settings, "bank-1", "bank"), "X-Emergency-Reason": "prêt immobilier".encode()}
    assert client.get(f"/v1/patients/{pid}/care-history", headers=bank).status_code == 404
    with rt.sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.actor_id == "bank-1")).one()
    assert (entry.outcome, entry.justification_sealed) == ("denied", None)
