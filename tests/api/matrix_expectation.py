"""What the HTTP access matrix test expects, written from docs/domain.md ("Who may read", its "no existence
oracle") and the data of `pipeline/access/data/access_matrix.csv`, never from `pipeline.access.policy`: the
actors, record states and documents of the matrix, and the answer each combination must get."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MATRIX_CSV = Path(str(resources.files("pipeline.access") / "data" / "access_matrix.csv"))

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


def load_matrix_rows() -> dict[tuple[str, str, str], bool]:
    """(subject, class, type or "") -> allowed; specialty rows are not used here (no specialty in tokens)."""
    rules: dict[tuple[str, str, str], bool] = {}
    with MATRIX_CSV.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if not row["specialty"].strip():
                rules[(row["profession"].strip(), row["class_code"].strip(), row["type_code"].strip())] = row["effect"].strip() == "allow"
    return rules


MATRIX = load_matrix_rows()


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
    # Another way into the care team (docs/domain.md, "Finding a record, and the care team over time"): "author" (wrote a
    # document of the record), "declared" (declared the patient's consent), "facility" (their facility is authorized
    # for a stay that has not ended), "expired" (an authorization, and their facility's, that ended a minute ago).
    ground: str | None = None

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


def all_actors() -> list[ActorCase]:
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
        ActorCase("operator", "operator"),
    ]
    # The other ways into the care team, for a profession that reads everything and one the matrix limits; the
    # patient's block stands against each (the author "unless the patient blocked them").
    for profession in ("physician", "dentist"):
        for ground in GROUNDS:
            for blocked in (False, True):
                actors.append(ActorCase(f"{profession}-{ground}{'-blocked' if blocked else ''}", "professional", profession,
                                        blocked=blocked, ground=ground))  # fmt: skip
    return actors


GROUNDS = ("author", "declared", "facility", "expired")
# Grounds that put a professional in the care team today ("expired" ended before the test's requests).
IN_THE_TEAM = frozenset({"author", "declared", "facility"})


ACTORS = all_actors()
STATES = (
    RecordState("open", "open", False),
    RecordState("open-emergency-opposed", "open", True),
    RecordState("closed", "closed", False),
    RecordState("closed-emergency-opposed", "closed", True),
    RecordState("opposed", "opposed", False),
)
DOCS = tuple(DocCase(c, t, m) for c, t in DOC_TYPES for m in (False, True))
RECORD_LEVEL_DOCS = (DOCS[0], DOCS[-1])  # 10/11490-0 unmasked, 95/unknown masked


def record_denial(actor: ActorCase, state: RecordState, emergency: bool) -> str | None:
    """The reason the record itself is refused (403), or None. Independent of the document."""
    if actor.kind in FORBIDDEN:
        return "forbidden_party"  # rule 6, whatever the token says
    if actor.kind == "administrative":
        return "administrative_staff"  # rule 6
    if state.status == "opposed":
        return "record_opposed"  # "the record exists unless the patient opposed it": nobody reads it
    if state.status != "open":
        return "record_closed"  # "readable by nobody"
    if actor.kind == "operator":
        return "not_allowed"  # the operator sets a minor's status and representatives; it reads nothing
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
    if is_attending_physician(actor):
        return None  # rule 4 (Stricter: attending powers only for a physician)
    return None if actor.care_team or actor.ground in IN_THE_TEAM else "not_in_care_team"


def document_denial(actor: ActorCase, doc: DocCase, emergency: bool) -> str | None:
    """Once the record is open to the actor: the reason this document is refused, or None."""
    if actor.kind in ("patient", "legal_representative"):
        return None  # rules 1 and 2: the whole record, masked documents included
    if emergency:
        subject = actor.profession if actor.kind == "professional" else "emergency_regulator"
    elif actor.kind == "occupational_physician":
        subject = "occupational_physician"
    elif is_attending_physician(actor):
        return None  # rule 4: everything, masked documents included
    else:
        subject = actor.profession or ""
    if not matrix_reads(subject, doc.class_code, doc.type_code):
        return "matrix_forbids"
    # Masked: visible to the patient, the author or its facility, the attending physician (rules 3 and 4);
    # Stricter: break-glass is not on that list, but the attending physician is, header or not.
    return "masked" if doc.masked and not is_attending_physician(actor) else None


def is_attending_physician(actor: ActorCase) -> bool:
    return actor.attending and actor.profession == "physician"


def may_learn_the_record_exists(actor: ActorCase) -> bool:
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


def refused(actor: ActorCase, denial: str) -> Expected:
    """A record-level refusal as the actor is told it: its reason, or the 404 of a record that does not exist."""
    return Expected(403, denial, False, False) if may_learn_the_record_exists(actor) else Expected(404, "not_found", False, False)


def expected(actor: ActorCase, state: RecordState, doc: DocCase, emergency: bool) -> Expected:
    denial = record_denial(actor, state, emergency)
    if denial:
        return refused(actor, denial)
    denial = document_denial(actor, doc, emergency)
    if denial is None:
        return Expected(200, None, True, emergency)
    # A reason about a document only to an actor who may see that document's metadata otherwise.
    may_know = record_denial(actor, state, False) is None and document_denial(actor, doc, False) is None
    return Expected(403, denial, False, False) if may_know else Expected(404, "not_found", False, False)
