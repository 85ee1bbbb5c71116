"""The access rules, exhaustively, through the HTTP API (metadata and care-history routes, with and without
break-glass; every record-level route for the actors who may not learn that a record exists).

Every actor kind x every document class (a representative type each, plus the types the matrix singles
out) x masked or not x blocked or not x attending physician or not x record open / closed / opposed x
emergency opposition, against an expectation written here from docs/domain.md ("Who may read", its
"no existence oracle") and the data of `api/data/access_matrix.csv`, never from `api.policy`. Where docs/domain.md names a
profession and a document outright (rule 7's examples, the regulator reading "likewise"), that wins over
the matrix file.

The world is built once: one patient per record state, the same documents for each, every relation
(authorized, blocked, representative, occupational consent) under its own actor id. Only the attending
physician is set per case, by a direct update.

Each test checks every row of one group (a profession, or an actor kind; for the existence oracle, a
route) and names every mismatching row in its failure message: the thousands of rows are all checked,
but they count as a few dozen tests.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from api.auth import mint_token
from pipeline.core.settings import Settings
from pipeline.index.models import AuditEntry, Batch, BatchItem, Document, Patient, RecordKey, RecordRelation
from pipeline.runtime import Runtime

pytestmark = pytest.mark.slow  # thousands of HTTP requests (the policy's own test, test_policy.py, is fast)

MATRIX_CSV = Path(__file__).resolve().parents[2] / "api" / "data" / "access_matrix.csv"
SOURCE = "hospital:H1"
EMERGENCY = {"X-Emergency-Reason": "unconscious patient, suspected overdose"}
OTHER_ATTENDING = "pro-attending-someone-else"

PROFESSIONS = ("physician", "pharmacist", "nurse", "physiotherapist", "dentist", "midwife", "podiatrist", "lab_biologist", "radiographer")
FORBIDDEN = ("employer", "insurer", "mutuelle", "bank")

# One representative type per class, plus the types the matrix singles out (lab results, stay reports,
# delivery reports, episode and psychiatric summaries, other prescriptions, a patient document that is not an
# advance directive).
DOC_TYPES = (
    ("10", "11490-0"),
    ("10", "34112-3"),
    ("10", "11502-2"),
    ("10", "15508-5"),
    ("11", "60591-5"),
    ("11", "34133-9"),
    ("11", "59259-2"),
    ("31", "18748-4"),
    ("42", "57833-6"),
    ("42", "57828-6"),
    ("43", "60593-1"),
    ("44", "PROTOCOL"),
    ("45", "87273-9"),
    ("52", "CERT"),
    ("60", "REMB"),
    ("90", "EXPPAT_3"),
    ("90", "DOCPAT01"),
    ("95", "unknown"),
)


# ---------------------------------------------------------------------------------------------
# The expectation, from docs/domain.md and the matrix data
# ---------------------------------------------------------------------------------------------


def _load_matrix() -> dict[tuple[str, str, str], bool]:
    """(subject, class, type or "") -> allowed; specialty rows are not used here (no specialty in tokens)."""
    rules: dict[tuple[str, str, str], bool] = {}
    with MATRIX_CSV.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if not row["specialty"].strip():
                rules[(row["profession"].strip(), row["class_code"].strip(), row["type_code"].strip())] = row["effect"].strip() == "allow"
    return rules


MATRIX = _load_matrix()


# docs/domain.md in its own words, whatever the matrix file says. Rule 7: "Physicians read every class"; "a dentist
# does not read advance directives or psychiatric summaries; a podiatrist does not read delivery reports".
# Rule 5: the SAMU regulator handling a call "may read likewise", as a physician under break-glass.
READS_EVERYTHING = frozenset({"physician", "emergency_regulator"})
DOMAIN_FORBIDS = frozenset({("dentist", "90", "EXPPAT_3"), ("dentist", "11", "59259-2"), ("podiatrist", "10", "15508-5")})


def matrix_reads(subject: str, class_code: str, type_code: str) -> bool:
    """docs/domain.md rule 7: a type row is more specific than a class row; no row: the profession does not read it."""
    if subject in READS_EVERYTHING:
        return True
    if (subject, class_code, type_code) in DOMAIN_FORBIDS:
        return False
    for key in ((subject, class_code, type_code), (subject, class_code, "")):
        if key in MATRIX:
            return MATRIX[key]
    return False


@dataclass(frozen=True)
class ActorCase:
    name: str
    kind: str
    profession: str | None = None
    care_team: bool = False  # authorized by the patient
    blocked: bool = False
    attending: bool = False  # the patient's attending physician
    registered: bool = False  # representative relation / occupational consent
    own_record: bool = False  # a patient reading their own record

    def subject(self, patient_id: str) -> str:
        return patient_id if self.own_record else f"actor-{self.name}"


@dataclass(frozen=True)
class RecordState:
    name: str
    status: str  # open | closed | opposed
    emergency_opposed: bool


@dataclass(frozen=True)
class DocCase:
    class_code: str
    type_code: str
    masked: bool

    @property
    def name(self) -> str:
        return f"{self.class_code}/{self.type_code}{'/masked' if self.masked else ''}"


def _actors() -> list[ActorCase]:
    actors = [
        ActorCase("patient", "patient", own_record=True),
        ActorCase("other-patient", "patient"),
        ActorCase("representative", "legal_representative", registered=True),
        ActorCase("unregistered-representative", "legal_representative"),
    ]
    for profession in PROFESSIONS:
        for care_team in (True, False):
            for blocked in (False, True):
                for attending in (False, True):
                    flags = f"{'team' if care_team else 'stranger'}{'-blocked' if blocked else ''}{'-attending' if attending else ''}"
                    actors.append(ActorCase(f"{profession}-{flags}", "professional", profession, care_team, blocked, attending))
    actors += [
        ActorCase("regulator", "emergency_regulator"),
        ActorCase("regulator-blocked", "emergency_regulator", blocked=True),
        ActorCase("administrative", "administrative"),
        *(ActorCase(kind, kind) for kind in FORBIDDEN),
        ActorCase("occupational-consent", "occupational_physician", registered=True),
        ActorCase("occupational-consent-blocked", "occupational_physician", registered=True, blocked=True),
        ActorCase("occupational-no-consent", "occupational_physician"),
    ]
    return actors


ACTORS = _actors()
STATES = (
    RecordState("open", "open", False),
    RecordState("open-emergency-opposed", "open", True),
    RecordState("closed", "closed", False),
    RecordState("closed-emergency-opposed", "closed", True),
    RecordState("opposed", "opposed", False),
)
DOCS = tuple(DocCase(c, t, m) for c, t in DOC_TYPES for m in (False, True))
RECORD_LEVEL_DOCS = (DOCS[0], DOCS[-1])  # 10/11490-0 unmasked, 95/unknown masked


def _record_denial(actor: ActorCase, state: RecordState, emergency: bool) -> str | None:
    """The reason the record itself is refused (403), or None. Independent of the document."""
    if actor.kind in FORBIDDEN:
        return "forbidden_party"  # rule 6, whatever the token says
    if actor.kind == "administrative":
        return "administrative_staff"  # rule 6
    if state.status != "open":
        return "record_closed"  # "readable by nobody"
    if actor.kind in ("patient", "legal_representative"):
        if not (actor.own_record or actor.registered):
            return "not_allowed"
        # Break-glass is a professional's act (rule 5): the patient reads without the header.
        return "not_allowed" if emergency else None
    if emergency:
        if actor.kind not in ("professional", "emergency_regulator"):
            return "not_allowed"  # rule 5 names professionals and the regulator only
        if state.emergency_opposed:
            return "emergency_opposed"
        return "blocked" if actor.blocked else None  # Stricter: the block stands under break-glass
    if actor.kind == "occupational_physician":
        if not actor.registered:
            return "no_consent"
        return "blocked" if actor.blocked else None
    if actor.kind == "emergency_regulator":
        return "not_allowed"  # reads only while handling a call (break-glass)
    if actor.blocked:
        return "blocked"  # rule 3 (Stricter: also for the attending physician)
    if _is_attending_physician(actor):
        return None  # rule 4 (Stricter: attending powers only for a physician)
    return None if actor.care_team else "not_in_care_team"


def _document_denial(actor: ActorCase, doc: DocCase, emergency: bool) -> str | None:
    """Once the record is open to the actor: the reason this document is refused, or None."""
    if actor.kind in ("patient", "legal_representative"):
        return None  # rules 1 and 2: the whole record, masked documents included
    if emergency:
        subject = actor.profession if actor.kind == "professional" else "emergency_regulator"
    elif actor.kind == "occupational_physician":
        subject = "occupational_physician"
    elif _is_attending_physician(actor):
        return None  # rule 4: everything, masked documents included
    else:
        subject = actor.profession or ""
    if not matrix_reads(subject, doc.class_code, doc.type_code):
        return "matrix_forbids"
    # Masked: visible to the patient, the author or its facility, the attending physician (rules 3 and 4);
    # Stricter: break-glass is not on that list, but the attending physician is, header or not.
    return "masked" if doc.masked and not _is_attending_physician(actor) else None


def _is_attending_physician(actor: ActorCase) -> bool:
    return actor.attending and actor.profession == "physician"


def _may_learn_the_record_exists(actor: ActorCase) -> bool:
    """docs/domain.md, "Who may read" (no existence oracle): to an actor who may not learn it, a record that exists and one that does not
    look the same. The patient, their representatives, health professionals (the regulator among them) and an
    occupational physician the patient consented to may learn it; nobody else (Stricter for rule 6's parties)."""
    if actor.kind in ("patient", "legal_representative", "occupational_physician"):
        return actor.own_record or actor.registered
    return actor.kind in ("professional", "emergency_regulator")


@dataclass(frozen=True)
class Expected:
    status: int
    code: str | None
    allowed: bool
    emergency: bool


def _refused(actor: ActorCase, denial: str) -> Expected:
    """A record-level refusal as the actor is told it: its reason, or the 404 of a record that does not exist."""
    return Expected(403, denial, False, False) if _may_learn_the_record_exists(actor) else Expected(404, "not_found", False, False)


def expected(actor: ActorCase, state: RecordState, doc: DocCase, emergency: bool) -> Expected:
    denial = _record_denial(actor, state, emergency)
    if denial:
        return _refused(actor, denial)
    denial = _document_denial(actor, doc, emergency)
    if denial is None:
        return Expected(200, None, True, emergency)
    # A reason about a document only to an actor who may see that document's metadata otherwise.
    may_know = _record_denial(actor, state, False) is None and _document_denial(actor, doc, False) is None
    return Expected(403, denial, False, False) if may_know else Expected(404, "not_found", False, False)


def _attending_break_glass_on_masked(actor: ActorCase, state: RecordState, emergency: bool, doc: DocCase) -> bool:
    return emergency and doc.masked and _is_attending_physician(actor) and not actor.blocked


# Cases where the API contradicts docs/domain.md (beyond a documented "Stricter:" reading): xfail when the answer differs.
KNOWN_CONTRADICTIONS: list[tuple[Callable[[ActorCase, RecordState, bool, DocCase], bool], str]] = [
    (
        _attending_break_glass_on_masked,
        "docs/domain.md rule 3: 'A masked document stays visible to the patient, to its author and the author's facility,"
        " and to the attending physician'; rule 4: 'The attending physician [...] reads everything, masked documents"
        " included'. With X-Emergency-Reason the API denies the attending physician a masked document (403 masked):"
        " api/policy.py _emergency's 'Stricter:' note cites that list but does not exempt the attending physician.",
    ),
]


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
            token = mint_token(self.settings, subject, actor.kind, **claims)
            self.tokens[subject] = {"Authorization": f"Bearer {token}"}
        return self.tokens[subject]

    def set_attending(self, patient_id: str, physician_id: str) -> None:
        if self.attending.get(patient_id) == physician_id:
            return
        with self.rt.sessions.begin() as session:
            session.execute(update(Patient).where(Patient.id == patient_id).values(attending_physician_id=physician_id))
        self.attending[patient_id] = physician_id


def _relations(actor: ActorCase) -> list[str]:
    relations = []
    if actor.care_team:
        relations.append("authorized")
    if actor.blocked:
        relations.append("blocked")
    if actor.registered:
        relations.append("representative" if actor.kind == "legal_representative" else "occupational_consent")
    return relations


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
            patient = Patient(ins=f"1800175{n:08d}", status=state.status, emergency_opposed=state.emergency_opposed)
            session.add(patient)
            session.flush()
            patients[state.name] = patient.id
            key = RecordKey(patient_id=patient.id, master_key_id="test-master", wrapped=b"wrapped-record-key")
            session.add(key)
            session.flush()
            for actor in ACTORS:
                for relation in _relations(actor):
                    session.add(RecordRelation(patient_id=patient.id, actor_id=actor.subject(patient.id), relation=relation))
            for m, doc in enumerate(DOCS):
                slot = f"row:{n * 100 + m}"
                item = BatchItem(batch_id=batch.id, slot=slot, file=f"{slot}.pdf", state="done")
                session.add(item)
                session.flush()
                document_id = str(uuid.uuid4())
                session.add(
                    Document(
                        id=document_id,
                        patient_id=patient.id,
                        source=SOURCE,
                        source_document_id=f"{state.name}-{doc.name}",
                        batch_item_id=item.id,
                        class_code=doc.class_code,
                        type_code=doc.type_code,
                        classified_by="test",
                        masked=doc.masked,
                        author_id="pro-author",
                        author_profession="physician",
                        mime_type="application/pdf",
                        size=10,
                        content_hmac=uuid.uuid4().hex,
                        object_key=f"objects/{document_id}",
                        record_key_id=key.id,
                        wrapped_key=b"wrapped-data-key",
                    )
                )
                documents[(state.name, doc.name)] = document_id
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
                docs = DOCS if _record_denial(actor, state, emergency) is None else RECORD_LEVEL_DOCS
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
    """Every row's mismatches, and the rows where the API contradicts docs/domain.md knowingly (see KNOWN_CONTRADICTIONS)."""

    rows: int = 0
    mismatches: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)

    def conclude(self) -> None:
        """Fail naming every mismatching row; else xfail naming the known contradictions met, if any."""
        assert not self.mismatches, f"{len(self.mismatches)} of {self.rows} rows break the rules:\n" + "\n".join(self.mismatches)
        if self.known:
            pytest.xfail(f"{len(self.known)} of {self.rows} rows meet a known contradiction:\n" + "\n".join(self.known))


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
    for matches, reason in KNOWN_CONTRADICTIONS:
        if matches(actor, state, emergency, doc) and got != (want.status, want.code):
            verdicts.known.append(f"{row}: got {got}, docs/domain.md expects {(want.status, want.code)}. {reason}")
            return
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


def expected_care_history(actor: ActorCase, state: RecordState, emergency: bool) -> Expected:
    denial = _record_denial(actor, state, emergency)
    if denial:
        return _refused(actor, denial)
    if actor.kind in ("patient", "legal_representative"):
        return Expected(200, None, True, False)  # rules 1 and 2: the whole record
    if emergency:
        subject = actor.profession if actor.kind == "professional" else "emergency_regulator"
    elif actor.kind == "occupational_physician":
        subject = "occupational_physician"
    elif _is_attending_physician(actor):
        return Expected(200, None, True, False)  # rule 4: everything
    else:
        subject = actor.profession or ""
    # docs/domain.md, "Classes and types": the care history is the reimbursement data, class 60 of the matrix.
    return Expected(200, None, True, emergency) if matrix_reads(subject, "60", "REMB") else _refused(actor, "matrix_forbids")


@pytest.mark.parametrize("group", GROUPS)
def test_care_history_access_follows_the_domain_rules(world, group):
    verdicts = Verdicts()
    for actor in (actor for actor in ACTORS if _group(actor) == group):
        for state in STATES:
            for emergency in (False, True):
                verdicts.rows += 1
                pid = world.patients[state.name]
                world.set_attending(pid, actor.subject(pid) if actor.attending else OTHER_ATTENDING)
                want = expected_care_history(actor, state, emergency)

                headers = world.headers(actor, pid)
                response = world.client.get(f"/v1/patients/{pid}/care-history", headers={**headers, **EMERGENCY} if emergency else headers)
                entries = _new_audit_entries(world, pid)

                row = _row_id(actor, state, emergency)
                got = (response.status_code, response.json().get("code") if response.status_code != 200 else None)
                if got != (want.status, want.code):
                    verdicts.mismatches.append(f"{row}: got {got}, expected {(want.status, want.code)}: {response.text}")
                got_entries = [(e.actor_id, e.action, e.outcome, e.emergency) for e in entries]
                wanted_entries = [(actor.subject(pid), "read_care_history", "allowed" if want.allowed else "denied", want.emergency)]
                if got_entries != wanted_entries:
                    verdicts.mismatches.append(f"{row}: audit entries {got_entries}, expected {wanted_entries}")
    verdicts.conclude()


# ---------------------------------------------------------------------------------------------
# No record-existence oracle: one answer whether the record exists (in any state) or not
# ---------------------------------------------------------------------------------------------

BODIES = {"/notifications": {"email": True, "sms": False}, "/attending-physician": {"physician_id": "pro-x"},
          "/emergency-opposition": {"opposed": True}}  # fmt: skip
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
)
KEPT_IN_THE_DARK = [actor for actor in ACTORS if not _may_learn_the_record_exists(actor)]


def test_every_route_of_a_record_is_checked_for_the_existence_oracle(world):
    prefix = "/v1/patients/{patient_id}"
    paths = world.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path.removeprefix(prefix)) for path, ops in paths.items() if path.startswith(prefix) for method in ops}
    assert routes == set(RECORD_ROUTES)


def _ask(world: World, actor: ActorCase, method: str, path: str, patient_id: str, document_id: str, emergency: bool):
    url = "/v1/patients/" + patient_id + path.format(document_id=document_id, professional_id="pro-x")
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
