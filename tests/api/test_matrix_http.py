"""The access rules, exhaustively, through the HTTP API (metadata and care-history routes, with and without
break-glass; every record-level route for the actors who may not learn that a record exists).

Every actor kind x every document class (a representative type each, plus the types the matrix singles
out) x masked or not x blocked or not x attending physician or not x record open / closed / opposed x
emergency opposition, against an expectation written here from docs/domain.md ("Who may read", its
"no existence oracle") and the data of `pipeline/access/data/access_matrix.csv`, never from
`pipeline.access.policy`. Where docs/domain.md names a profession and a document outright (rule 7's
examples, the regulator reading "likewise"), that wins over the matrix file.

The world is built once: one patient per record state, the same documents for each, every relation
(authorized, blocked, representative, occupational consent) under its own actor id. Only the attending
physician is set per case, by a direct update.

Each test checks every row of one group (a profession, or an actor kind; for the existence oracle, a
route) and names every mismatching row in its failure message: the thousands of rows are all checked,
but they count as a few dozen tests.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.identity import with_key
from pipeline.core.settings import Settings
from pipeline.index.models import AuditEntry, Batch, BatchItem, Document, Patient, RecordKey, RecordRelation
from pipeline.runtime import Runtime
from tests.api.matrix_expectation import (
    ACTORS,
    DOCS,
    FORBIDDEN,
    RECORD_LEVEL_DOCS,
    STATES,
    ActorCase,
    DocCase,
    Expected,
    RecordState,
    expected,
    is_attending_physician,
    matrix_reads,
    may_learn_the_record_exists,
    record_denial,
    refused,
)

pytestmark = pytest.mark.slow  # thousands of HTTP requests (the policy's own test, test_policy.py, is fast)

SOURCE = "hospital:H1"
EMERGENCY = {"X-Emergency-Reason": "unconscious patient, suspected overdose"}
OTHER_ATTENDING = "pro-attending-someone-else"
# The facilities of the "facility" and "expired" grounds: one authorized for a stay still running, one whose stay ended.
FINESS_STAY, FINESS_ENDED = "750000001", "750000002"
FACILITIES = {"facility": FINESS_STAY, "expired": FINESS_ENDED}


def ins_of(n: int) -> str:
    return with_key(f"1800175{n:06d}")


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------


@dataclass
class World:
    settings: Settings
    rt: Runtime
    client: TestClient
    patients: dict[str, str]  # state name -> patient id
    documents: dict[tuple[str, str], str]  # (state name, doc name) -> document id
    attending: dict[str, str | None]  # patient id -> current attending physician id
    audit_seq: dict[str, int]  # chain -> last seq seen
    tokens: dict[str, dict[str, str]]

    def headers(self, actor: ActorCase, patient_id: str) -> dict[str, str]:
        subject = actor.subject(patient_id)
        if subject not in self.tokens:
            claims = {"profession": actor.profession, "rpps": subject} if actor.kind == "professional" else {}
            if actor.ground in FACILITIES:
                claims["facility_id"] = f"hospital:{FACILITIES[actor.ground]}"
            token = mint_token(self.settings, subject, actor.kind, **claims)
            self.tokens[subject] = {"Authorization": f"Bearer {token}"}
        return self.tokens[subject]

    def set_attending(self, patient_id: str, physician_id: str) -> None:
        if self.attending.get(patient_id) == physician_id:
            return
        with self.rt.sessions.begin() as session:
            session.execute(update(Patient).where(Patient.id == patient_id).values(attending_physician_id=physician_id))
        self.attending[patient_id] = physician_id


def _relations(actor: ActorCase, patient_id: str) -> list[RecordRelation]:
    subject = actor.subject(patient_id)
    relations = []
    if actor.care_team:
        relations.append(RecordRelation(actor_id=subject, relation="authorized"))
    if actor.blocked:
        relations.append(RecordRelation(actor_id=subject, relation="blocked"))
    if actor.registered:
        relation = "representative" if actor.kind == "legal_representative" else "occupational_consent"
        relations.append(RecordRelation(actor_id=subject, relation=relation))
    if actor.ground == "declared":
        relations.append(RecordRelation(actor_id=subject, relation="declared_consent", granted_by=subject))
    if actor.ground == "expired":
        ended = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        relations.append(RecordRelation(actor_id=subject, relation="authorized", until=ended))
    return relations


def _facilities() -> list[RecordRelation]:
    """Every record: FINESS_STAY authorized for a stay ending in a day, FINESS_ENDED for one that ended a minute ago."""
    now = dt.datetime.now(dt.UTC)
    return [RecordRelation(actor_id=FINESS_STAY, relation="facility", until=now + dt.timedelta(days=1)),
            RecordRelation(actor_id=FINESS_ENDED, relation="facility", until=now - dt.timedelta(minutes=1))]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # In memory where the machine has a tmpfs: each request commits an audit entry, and the thousands of
    # fsyncs that would cost on a disk are not what this module checks (it halves its time on a busy machine).
    in_memory = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="dmp-matrix-", dir=in_memory)) if in_memory.is_dir() else tmp_path_factory.mktemp("matrix")
    settings = Settings(home=root / "home")
    rt = Runtime.from_settings(settings, prepare=True)
    patients: dict[str, str] = {}
    documents: dict[tuple[str, str], str] = {}
    with rt.sessions.begin() as session:
        batch = Batch(source=SOURCE, manifest_digest=uuid.uuid4().hex, total=len(STATES) * len(DOCS))
        session.add(batch)
        session.flush()
        for n, state in enumerate(STATES):
            patient = Patient(ins=ins_of(n), status=state.status, emergency_opposed=state.emergency_opposed)
            session.add(patient)
            session.flush()
            patients[state.name] = patient.id
            key = RecordKey(patient_id=patient.id, master_key_id="test-master", wrapped=b"wrapped-record-key")
            session.add(key)
            session.flush()
            for relation in [*_facilities(), *(r for actor in ACTORS for r in _relations(actor, patient.id))]:
                relation.patient_id = patient.id
                session.add(relation)
            # The "author" actors treated the patient: each wrote a document of the record, not one of DOCS.
            authored = [(f"authored-{actor.name}", DocCase("11", "60591-5", False), actor.subject(patient.id))
                        for actor in ACTORS if actor.ground == "author"]  # fmt: skip
            for m, (name, doc, author) in enumerate([*((d.name, d, "pro-author") for d in DOCS), *authored]):
                slot = f"row:{n * 100 + m}"
                item = BatchItem(batch_id=batch.id, slot=slot, file=f"{slot}.pdf", state="indexed")
                session.add(item)
                session.flush()
                document_id = str(uuid.uuid4())
                session.add(
                    Document(
                        id=document_id,
                        patient_id=patient.id,
                        source=SOURCE,
                        source_document_id=f"{state.name}-{name}",
                        batch_item_id=item.id,
                        class_code=doc.class_code,
                        type_code=doc.type_code,
                        classified_by="test",
                        masked=doc.masked,
                        author_id=author,
                        author_profession="physician",
                        mime_type="application/pdf",
                        size=10,
                        content_hmac=uuid.uuid4().hex,
                        object_key=f"objects/{document_id}",
                        record_key_id=key.id,
                        wrapped_key=b"wrapped-data-key",
                    )
                )
                documents[(state.name, name)] = document_id
    with TestClient(create_app(settings)) as client:
        yield World(settings, rt, client, patients, documents, {}, {}, {})
    rt.close()
    if root.is_relative_to(in_memory):
        shutil.rmtree(root)


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------


def _group(actor: ActorCase) -> str:
    """The rows of one test: a professional's profession, else the actor's kind."""
    return actor.profession or actor.kind


GROUPS = list(dict.fromkeys(_group(actor) for actor in ACTORS))


def _cases(group: str):
    for actor in ACTORS:
        if _group(actor) != group:
            continue
        for state in STATES:
            for emergency in (False, True):
                # A refused record is refused before any document is looked at (docs/domain.md: a closed record is
                # read by nobody, rule 6 parties never read...): a masked and an unmasked document suffice.
                docs = DOCS if record_denial(actor, state, emergency) is None else RECORD_LEVEL_DOCS
                for doc in docs:
                    yield actor, state, emergency, doc


def _row_id(actor: ActorCase, state: RecordState, emergency: bool, doc: DocCase | None = None) -> str:
    row = f"{actor.name}-{state.name}-{'emergency' if emergency else 'normal'}"
    return f"{row}-{doc.name.replace('/', '_')}" if doc else row


def _new_audit_entries(world: World, chain: str) -> list[AuditEntry]:
    with world.rt.sessions() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.chain == chain, AuditEntry.seq > world.audit_seq.get(chain, 0))))
    if entries:
        world.audit_seq[chain] = max(e.seq for e in entries)
    return entries


@dataclass
class Verdicts:
    """Every row's mismatches."""

    rows: int = 0
    mismatches: list[str] = field(default_factory=list)

    def conclude(self) -> None:
        """Fail naming every mismatching row."""
        assert not self.mismatches, f"{len(self.mismatches)} of {self.rows} rows break the rules:\n" + "\n".join(self.mismatches)


def _check_metadata_row(world: World, verdicts: Verdicts, actor: ActorCase, state: RecordState, emergency: bool, doc: DocCase) -> None:
    row = _row_id(actor, state, emergency, doc)
    verdicts.rows += 1
    pid = world.patients[state.name]
    document_id = world.documents[(state.name, doc.name)]
    world.set_attending(pid, actor.subject(pid) if actor.attending else OTHER_ATTENDING)
    want = expected(actor, state, doc, emergency)

    headers = world.headers(actor, pid)
    response = world.client.get(f"/v1/patients/{pid}/documents/{document_id}", headers={**headers, **EMERGENCY} if emergency else headers)
    entries = _new_audit_entries(world, pid)

    got = (response.status_code, response.json().get("code") if response.status_code != 200 else None)
    if got != (want.status, want.code):
        verdicts.mismatches.append(f"{row}: got {got}, expected {(want.status, want.code)}: {response.text}")
    elif want.status == 200 and response.json()["id"] != document_id:
        verdicts.mismatches.append(f"{row}: answered document {response.json()['id']}, not {document_id}")
    if len(entries) != 1:
        verdicts.mismatches.append(f"{row}: audit entries {[(e.actor_id, e.outcome, e.reason) for e in entries]}, expected one")
        return
    entry = entries[0]
    wanted_entry = (actor.subject(pid), "allowed" if want.allowed else "denied", want.emergency, document_id,
                    "emergency_read" if emergency else "read_metadata")  # fmt: skip
    got_entry = (entry.actor_id, entry.outcome, entry.emergency, entry.document_id, entry.action)
    if got_entry != wanted_entry:
        verdicts.mismatches.append(f"{row}: audit entry {got_entry}, expected {wanted_entry}")


@pytest.mark.parametrize("group", GROUPS)
def test_metadata_access_follows_the_domain_rules(world, group):
    verdicts = Verdicts()
    for actor, state, emergency, doc in _cases(group):
        _check_metadata_row(world, verdicts, actor, state, emergency, doc)
    verdicts.conclude()


def test_an_unknown_patient_is_404_and_audited_in_the_no_patient_chain(world):
    actor = next(a for a in ACTORS if a.name == "physician-team")
    missing = str(uuid.uuid4())
    _new_audit_entries(world, "-")  # skip what earlier requests wrote there
    response = world.client.get(f"/v1/patients/{missing}/documents/{uuid.uuid4()}", headers=world.headers(actor, missing))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    entries = _new_audit_entries(world, "-")
    assert [(e.actor_id, e.outcome, e.emergency) for e in entries] == [(actor.subject(missing), "denied", False)]


# ---------------------------------------------------------------------------------------------
# The care history (class 60, a record-level read), with and without break-glass
# ---------------------------------------------------------------------------------------------


def expected_record_read(actor: ActorCase, state: RecordState, emergency: bool, class_code: str, type_code: str) -> Expected:
    """A record-level read of what stands for a document of `class_code` / `type_code` in the matrix."""
    denial = record_denial(actor, state, emergency)
    if denial:
        return refused(actor, denial)
    if actor.kind in ("patient", "legal_representative"):
        return Expected(200, None, True, False)  # rules 1 and 2: the whole record
    if emergency:
        subject = actor.profession if actor.kind == "professional" else "emergency_regulator"
    elif actor.kind == "occupational_physician":
        subject = "occupational_physician"
    elif is_attending_physician(actor):
        return Expected(200, None, True, False)  # rule 4: everything
    else:
        subject = actor.profession or ""
    return Expected(200, None, True, emergency) if matrix_reads(subject, class_code, type_code) else refused(actor, "matrix_forbids")


def _record_read_verdicts(world, group: str, path: str, action: str, class_code: str, type_code: str) -> Verdicts:
    """GET /v1/patients/{pid}`path` by every actor of `group`, on every record state, with and without
    break-glass: its answer and its one audit entry against `expected_record_read`."""
    verdicts = Verdicts()
    for actor in (actor for actor in ACTORS if _group(actor) == group):
        for state in STATES:
            for emergency in (False, True):
                verdicts.rows += 1
                pid = world.patients[state.name]
                world.set_attending(pid, actor.subject(pid) if actor.attending else OTHER_ATTENDING)
                want = expected_record_read(actor, state, emergency, class_code, type_code)
                headers = world.headers(actor, pid)
                response = world.client.get(f"/v1/patients/{pid}{path}", headers={**headers, **EMERGENCY} if emergency else headers)
                entries = _new_audit_entries(world, pid)
                row = _row_id(actor, state, emergency)
                got = (response.status_code, response.json().get("code") if response.status_code != 200 else None)
                if got != (want.status, want.code):
                    verdicts.mismatches.append(f"{row}: got {got}, expected {(want.status, want.code)}: {response.text}")
                got_entries = [(e.actor_id, e.action, e.outcome, e.emergency) for e in entries]
                wanted_entries = [(actor.subject(pid), action, "allowed" if want.allowed else "denied", want.emergency)]
                if got_entries != wanted_entries:
                    verdicts.mismatches.append(f"{row}: audit entries {got_entries}, expected {wanted_entries}")
    return verdicts


@pytest.mark.parametrize("group", GROUPS)
def test_care_history_access_follows_the_domain_rules(world, group):
    # docs/domain.md, "Classes and types": the care history is the reimbursement data, class 60 of the matrix.
    _record_read_verdicts(world, group, "/care-history", "read_care_history", "60", "REMB").conclude()


# ---------------------------------------------------------------------------------------------
# What the patient wrote besides documents (medical profile, emergency contacts), with and without break-glass
# ---------------------------------------------------------------------------------------------

# docs/domain.md, "Documents over time": "read under the same rules as any document of the record"; they are what
# the patient added, class 90 of the matrix (no advance directive: the class row decides).
SECTIONS = {
    "/medical-profile": ("read_medical_profile", "medical_profile"),
    "/emergency-contacts": ("read_emergency_contacts", "emergency_contacts"),
}


@pytest.mark.parametrize("path", SECTIONS)
@pytest.mark.parametrize("group", GROUPS)
def test_the_patients_sections_are_read_as_a_class_90_document(world, group, path):
    action, type_code = SECTIONS[path]
    _record_read_verdicts(world, group, path, action, "90", type_code).conclude()


# ---------------------------------------------------------------------------------------------
# No record-existence oracle: one answer whether the record exists (in any state) or not
# ---------------------------------------------------------------------------------------------

BODIES = {"/notifications": {"email": True, "sms": False}, "/attending-physician": {"physician_id": "pro-x"},
           "/emergency-opposition": {"opposed": True}, "/consent": {}, "/facilities/{finess}": {"until": "2099-01-01T00:00:00Z"},
           "/attending-physician/transfer": {"physician_id": "pro-x"}, "/opposition": {"opposed": True},
           "/occupational-physicians/{professional_id}/consent": {"consent": True}, "/medical-profile": {"blood_group": "O-"},
           "/emergency-contacts": {"contacts": []}}  # fmt: skip
RECORD_ROUTES = (
    ("GET", "/documents"),
    ("GET", "/documents/{document_id}"),
    ("GET", "/documents/{document_id}/content"),
    ("POST", "/documents/{document_id}/mask"),
    ("POST", "/documents/{document_id}/unmask"),
    ("POST", "/documents/{document_id}/hide-from-representatives"),
    ("POST", "/documents/{document_id}/show-to-representatives"),
    ("GET", "/care-history"),
    ("GET", "/access-log"),
    ("GET", "/export"),
    ("GET", "/notifications"),
    ("PUT", "/notifications"),
    ("POST", "/professionals/{professional_id}/authorize"),
    ("POST", "/professionals/{professional_id}/block"),
    ("PUT", "/attending-physician"),
    ("PUT", "/emergency-opposition"),
    ("POST", "/close"),
    ("POST", "/consent"),
    ("DELETE", "/consents/{professional_id}"),
    ("PUT", "/facilities/{finess}"),
    ("DELETE", "/facilities/{finess}"),
    ("GET", "/care-team"),
    ("POST", "/attending-physician/transfer"),
    ("POST", "/attending-physician/transfer/accept"),
    ("PUT", "/opposition"),
    ("PUT", "/occupational-physicians/{professional_id}/consent"),
    # documents over time and the patient's contributions (issue 16)
    ("GET", "/documents/{document_id}/history"),
    ("POST", "/documents"),
    ("GET", "/contributions/{batch_id}"),
    ("GET", "/medical-profile"),
    ("PUT", "/medical-profile"),
    ("GET", "/emergency-contacts"),
    ("PUT", "/emergency-contacts"),
)
BATCH_ID = str(uuid.uuid4())  # an upload of the patient's: none, in this world
# The route's own names for its path parameters, where they are not the ones above.
PATH_NAMES = {"/occupational-physicians/{physician_id}/consent": "/occupational-physicians/{professional_id}/consent"}
KEPT_IN_THE_DARK = [actor for actor in ACTORS if not may_learn_the_record_exists(actor)]


def test_every_route_of_a_record_is_checked_for_the_existence_oracle(world):
    prefix = "/v1/patients/{patient_id}"
    paths = world.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), PATH_NAMES.get(path.removeprefix(prefix), path.removeprefix(prefix)))
              for path, ops in paths.items() if path.startswith(prefix) for method in ops}  # fmt: skip
    assert routes == set(RECORD_ROUTES)


def _ask(world: World, actor: ActorCase, method: str, path: str, patient_id: str, document_id: str, emergency: bool):
    names = {"document_id": document_id, "professional_id": "pro-x", "finess": FINESS_STAY, "batch_id": BATCH_ID}
    url = "/v1/patients/" + patient_id + path.format(**names)
    headers = {**world.headers(actor, patient_id), **(EMERGENCY if emergency else {})}
    response = world.client.request(method, url, headers=headers, json=BODIES.get(path))
    return response.status_code, response.headers.get("content-type"), response.content


@pytest.mark.parametrize(("method", "path"), RECORD_ROUTES, ids=[f"{m}{p}" for m, p in RECORD_ROUTES])
def test_an_actor_who_may_not_learn_it_gets_one_answer_whether_the_record_exists_or_not(world, method, path):
    doc = DOCS[0].name
    verdicts = Verdicts()
    for actor in KEPT_IN_THE_DARK:
        for emergency in (False, True):
            verdicts.rows += 1
            answers = {state.name: _ask(world, actor, method, path, pid, world.documents[(state.name, doc)], emergency)
                       for state in STATES for pid in (world.patients[state.name],)}  # fmt: skip
            answers["missing"] = _ask(world, actor, method, path, str(uuid.uuid4()), str(uuid.uuid4()), emergency)
            if set(answers.values()) != {(404, "application/problem+json", answers["missing"][2])}:
                verdicts.mismatches.append(f"{actor.name}-{'emergency' if emergency else 'normal'}: {answers}")
    verdicts.conclude()


@pytest.mark.parametrize("kind", FORBIDDEN)
def test_the_chain_keeps_the_real_reason_of_a_refusal_told_as_not_found(world, kind):
    actor = next(a for a in ACTORS if a.kind == kind)
    pid = world.patients["open"]
    _new_audit_entries(world, pid)
    assert world.client.get(f"/v1/patients/{pid}/documents", headers=world.headers(actor, pid)).status_code == 404
    assert [(e.reason, e.told_reason) for e in _new_audit_entries(world, pid)] == [("forbidden_party", "not_found")]


# ---------------------------------------------------------------------------------------------
# Finding a record by INS (POST /v1/records/lookup): the answer each actor gets, and no existence oracle
# ---------------------------------------------------------------------------------------------

UNKNOWN = {"record": None, "status": None, "access": {"allowed": False, "reason": "not_found"}, "attending_physician": False}


def expected_lookup(actor: ActorCase, state: RecordState, patient_id: str) -> dict[str, object]:
    """docs/domain.md: whether a record is open, whether this actor may read it (and why not), whether they are the
    attending physician; to an actor who may not learn it, the answer for no record."""
    if not may_learn_the_record_exists(actor):
        return UNKNOWN
    denial = record_denial(actor, state, False)
    return {"record": patient_id, "status": state.status, "access": {"allowed": denial is None, "reason": denial},
            "attending_physician": is_attending_physician(actor)}  # fmt: skip


@pytest.mark.parametrize("group", GROUPS)
def test_lookup_by_ins_follows_the_domain_rules(world, group):
    verdicts = Verdicts()
    for actor in (actor for actor in ACTORS if _group(actor) == group):
        for n, state in enumerate(STATES):
            verdicts.rows += 1
            pid = world.patients[state.name]
            world.set_attending(pid, actor.subject(pid) if actor.attending else OTHER_ATTENDING)
            _new_audit_entries(world, pid)  # skip what earlier requests wrote there
            response = world.client.post("/v1/records/lookup", headers=world.headers(actor, pid), json={"ins": ins_of(n)})
            entries = _new_audit_entries(world, pid)
            want = expected_lookup(actor, state, pid)
            row = _row_id(actor, state, False)
            if (response.status_code, response.json()) != (200, want):
                verdicts.mismatches.append(f"{row}: got {response.status_code} {response.json()}, expected {want}")
            if [(e.actor_id, e.action) for e in entries] != [(actor.subject(pid), "lookup")]:
                verdicts.mismatches.append(f"{row}: audit entries {[(e.actor_id, e.action) for e in entries]}, expected one lookup")
        if not may_learn_the_record_exists(actor):
            missing = world.client.post("/v1/records/lookup", headers=world.headers(actor, "missing"), json={"ins": ins_of(99)})
            if (missing.status_code, missing.json()) != (200, UNKNOWN):
                verdicts.mismatches.append(f"{actor.name}-missing: got {missing.status_code} {missing.json()}")
    verdicts.conclude()
