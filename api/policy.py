"""The access policy: one pure function, `decide`, over the access matrix (`api/data/access_matrix.csv`).

Source of truth: the domain rules (docs/domain.md), sections "One record per patient", "Who may read", "What the patient controls".
`decide` does no I/O (the matrix is loaded once, validated at load) and never logs: the caller logs every
attempt, and logs a decision with `emergency=True` as an emergency override and notifies the patient and
the attending physician.

Where docs/domain.md leaves room, the stricter reading for privacy is taken; each such place says "Stricter:".

The matrix: rows `profession, specialty, class_code, type_code, effect, note`. For a (profession, specialty,
class, type) the most specific matching row wins (a type row over a class row, a specialty row over a
profession-wide row); no matching row means deny. Professions not listed in the table read nothing.
"""

from __future__ import annotations

import calendar
import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

MATRIX_PATH = Path(__file__).resolve().parent / "data" / "access_matrix.csv"

PROFESSIONS = frozenset(
    {"physician", "pharmacist", "nurse", "physiotherapist", "dentist", "midwife", "podiatrist", "lab_biologist", "radiographer"}
)
# Matrix rows may also name these two actor kinds: what they read once `decide` lets them in at all.
MATRIX_SUBJECTS = PROFESSIONS | {"occupational_physician", "emergency_regulator"}

CLASSES = frozenset({"10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95"})
# Types docs/domain.md names that document_types.csv does not list (or lists under another class).
EXTRA_TYPES = frozenset({("31", "18748-4"), ("60", "REMB"), ("95", "unknown")} | {("90", f"DOCPAT0{n}") for n in range(1, 7)})
CARE_HISTORY = ("60", "REMB")  # the care history is reimbursement data: the matrix's class 60 decides for professionals

FORBIDDEN_KINDS = frozenset({"employer", "insurer", "mutuelle", "bank"})
KINDS = FORBIDDEN_KINDS | {
    "patient",
    "legal_representative",
    "professional",
    "emergency_regulator",
    "administrative",
    "occupational_physician",
}

READ_ACTIONS = frozenset({"list", "read_metadata", "read_content"})
CONTROL_ACTIONS = frozenset(
    {
        "mask",
        "unmask",
        "authorize_professional",
        "block_professional",
        "set_attending_physician",
        "oppose_emergency",
        "close_record",
        "export",
        "set_notifications",
        "read_notifications",
    }
)
# The minor's own request to hide a document from their legal representatives (and to undo it): the
# patient's alone, never a representative's.
PATIENT_ONLY_ACTIONS = frozenset({"hide_from_representatives", "show_to_representatives"})
ACTIONS = READ_ACTIONS | CONTROL_ACTIONS | PATIENT_ONLY_ACTIONS | {"read_care_history", "read_access_log", "emergency_read"}
# These need a document; the read actions accept None (record level).
DOCUMENT_ACTIONS = frozenset({"mask", "unmask"}) | PATIENT_ONLY_ACTIONS

REASON_CODES = frozenset(
    {
        # allowed
        "patient",
        "legal_representative",
        "attending_physician",
        "care_team",
        "occupational_consent",
        "emergency_override",
        "own_entries",
        # denied
        "record_closed",
        "forbidden_party",
        "administrative_staff",
        "no_consent",
        "not_allowed",
        "unknown_action",
        "hidden_until_announcement",
        "hidden_from_representative",
        "blocked",
        "not_in_care_team",
        "matrix_forbids",
        "masked",
        "emergency_opposed",
        "emergency_requires_reason",
    }
)


@dataclass(frozen=True)
class Actor:
    id: str
    kind: str  # one of KINDS
    profession: str | None = None  # for professionals: one of PROFESSIONS
    specialty: str | None = None  # e.g. psychiatry, general_practice
    facility_id: str | None = None


@dataclass(frozen=True)
class Record:
    patient_id: str
    status: str = "open"  # open | closed | opposed
    is_minor: bool = False
    representatives: frozenset[str] = frozenset()  # actor ids of legal representatives
    care_team: frozenset[str] = frozenset()  # authorized by, or treated and not objected by, the patient
    blocked: frozenset[str] = frozenset()  # professionals the patient blocked
    attending_physician: str | None = None  # actor id (médecin traitant)
    emergency_opposed: bool = False
    occupational_consent: frozenset[str] = frozenset()  # occupational physicians with express consent


@dataclass(frozen=True)
class DocumentView:
    id: str
    class_code: str
    type_code: str
    masked: bool = False
    hidden_from_patient_until: date | None = None  # held until an announcement; visible automatically one month after deposit
    deposited_on: date | None = None
    author_id: str | None = None
    author_facility_id: str | None = None
    hidden_from_representatives: bool = False  # the minor asked to hide it from legal representatives


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # one of REASON_CODES
    emergency: bool = False  # allowed only through break-glass: log as an emergency override and notify


# The care history as the policy sees it under break-glass: reimbursement data, read as one class-60 document.
CARE_HISTORY_VIEW = DocumentView("care-history", *CARE_HISTORY)


@dataclass(frozen=True)
class LogScope:
    """What a reader whom `decide` let `read_access_log` sees of the record's access log.

    On top of this, an entry about a document is shown only to a reader `decide` lets read that document's
    metadata today, and the reader's own entries read as they were answered (a 404 reads `not_found`).
    """

    own_only: bool  # only the entries about the reader's own actions
    hides_patient: bool  # the patient's own actions are left out
    justifications: bool  # the break-glass justifications are shown


# ---------------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------------

_HEADER = ["profession", "specialty", "class_code", "type_code", "effect", "note"]
_SPECIALTY = re.compile(r"^[a-z][a-z0-9_]*$")
_Key = tuple[str, str, str, str]  # profession, specialty ("" = any), class, type ("" = any)


@dataclass(frozen=True)
class AccessMatrix:
    rules: Mapping[_Key, bool]

    @property
    def subjects(self) -> frozenset[str]:
        return frozenset(key[0] for key in self.rules)

    def allows(self, profession: str | None, specialty: str | None, class_code: str, type_code: str) -> bool:
        """The most specific matching row decides (type over class, then specialty over any); no row: deny."""
        if not profession:
            return False
        for spec, typ in ((specialty or "", type_code), ("", type_code), (specialty or "", ""), ("", "")):
            effect = self.rules.get((profession, spec, class_code, typ))
            if effect is not None:
                return effect
        return False


def _known_types() -> frozenset[tuple[str, str]]:
    table = resources.files("pipeline.documents") / "data" / "document_types.csv"
    with table.open(encoding="utf-8", newline="") as f:
        return frozenset((row["class_code"], row["type_code"]) for row in csv.DictReader(f)) | EXTRA_TYPES


def load_matrix(path: Path | str = MATRIX_PATH) -> AccessMatrix:
    """Read and validate the matrix; any bad row raises ValueError naming the file and line."""
    known_types = _known_types()
    rules: dict[_Key, bool] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != _HEADER:
            raise ValueError(f"{path}:1: header must be {','.join(_HEADER)}, got {header}")
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(_HEADER):
                raise ValueError(f"{path}:{line}: expected {len(_HEADER)} columns, got {len(row)}")
            profession, specialty, class_code, type_code, effect, _note = (cell.strip() for cell in row)
            if profession not in MATRIX_SUBJECTS:
                raise ValueError(f"{path}:{line}: unknown profession {profession!r}")
            if specialty and not _SPECIALTY.match(specialty):
                raise ValueError(f"{path}:{line}: specialty must be snake_case, got {specialty!r}")
            if class_code not in CLASSES:
                raise ValueError(f"{path}:{line}: unknown class {class_code!r}")
            if type_code and (class_code, type_code) not in known_types:
                raise ValueError(f"{path}:{line}: unknown type {type_code!r} for class {class_code}")
            if effect not in ("allow", "deny"):
                raise ValueError(f"{path}:{line}: effect must be allow or deny, got {effect!r}")
            key = (profession, specialty, class_code, type_code)
            if key in rules:
                raise ValueError(f"{path}:{line}: duplicate row for {key}")
            rules[key] = effect == "allow"
    return AccessMatrix(MappingProxyType(rules))


@lru_cache(maxsize=1)
def default_matrix() -> AccessMatrix:
    return load_matrix(MATRIX_PATH)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _plus_one_month(day: date) -> date:
    """The same day next month, clamped to the month's end (31 January -> 28/29 February)."""
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def hidden_from_patient(document: DocumentView, today: date) -> bool:
    """Held by its author until an announcement, and neither that date nor one month after deposit has come."""
    if document.hidden_from_patient_until is None:
        return False
    release = document.hidden_from_patient_until
    if document.deposited_on is not None:
        release = min(release, _plus_one_month(document.deposited_on))
    return today < release


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def _allow(reason: str, emergency: bool = False) -> Decision:
    return Decision(True, reason, emergency)


def _matrix_allows(matrix: AccessMatrix, subject: str | None, specialty: str | None, document: DocumentView | None) -> bool:
    if document is None:
        return True  # a record-level question (may this actor open the record?); each document is decided on its own
    return matrix.allows(subject, specialty, document.class_code, document.type_code)


def _masked_for(actor: Actor, document: DocumentView | None) -> bool:
    """Masked and the actor is neither the author nor from the author's facility."""
    if document is None or not document.masked:
        return False
    if document.author_id is not None and actor.id == document.author_id:
        return False
    return not (actor.facility_id is not None and actor.facility_id == document.author_facility_id)


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def decide(
    actor: Actor,
    action: str,
    record: Record,
    document: DocumentView | None,
    *,
    today: date,
    emergency_reason: str | None = None,
    matrix: AccessMatrix | None = None,
) -> Decision:
    """May `actor` do `action` on `record` (and `document`, None for record-level actions)? Pure; never raises
    for a policy reason (only for a programming error: mask/unmask without a document)."""
    if action not in ACTIONS:
        return _deny("unknown_action")  # Stricter: an action nobody wrote a rule for is denied, not guessed.
    if action in DOCUMENT_ACTIONS and document is None:
        raise ValueError(f"action {action!r} needs a document")
    matrix = matrix or default_matrix()

    # Rule 6: never allowed, whatever the token or the consent says; checked before anything else.
    if actor.kind in FORBIDDEN_KINDS:
        return _deny("forbidden_party")
    if actor.kind == "administrative":
        return _deny("administrative_staff")
    if actor.kind not in KINDS:
        return _deny("not_allowed")

    # A closed or opposed record accepts nothing and is readable by nobody, the patient included: not even
    # the export or the access log (Stricter: reopening or a copy is a request handled outside this policy).
    if record.status != "open":
        return _deny("record_closed")
    if action == "read_care_history" and emergency_reason and emergency_reason.strip():
        # Break-glass on the care history, as on the documents: an emergency read of the reimbursement data
        # (class 60), decided below like any emergency read.
        action, document = "emergency_read", CARE_HISTORY_VIEW
    if action in PATIENT_ONLY_ACTIONS and actor.kind != "patient":
        return _deny("not_allowed")

    if actor.kind == "patient":
        if actor.id != record.patient_id:
            return _deny("not_allowed")
        return _patient_or_representative(action, document, today, "patient")
    if actor.kind == "legal_representative":
        if actor.id not in record.representatives:
            return _deny("not_allowed")
        if document is not None and document.hidden_from_representatives:
            # Applied whatever `is_minor` says (Stricter: the request stays honoured after a status change).
            return _deny("hidden_from_representative")
        return _patient_or_representative(action, document, today, "legal_representative")

    if action == "emergency_read":
        return _emergency(actor, record, document, matrix, emergency_reason)

    if actor.kind == "occupational_physician":
        if actor.id not in record.occupational_consent:
            return _deny("no_consent")
        return _occupational(actor, action, record, document, matrix)
    if actor.kind == "emergency_regulator":
        # The regulator reads only through break-glass while handling a call; it may read its own log entries.
        return _allow("own_entries") if action == "read_access_log" else _deny("not_allowed")
    return _professional(actor, action, record, document, matrix)


def _patient_or_representative(action: str, document: DocumentView | None, today: date, reason: str) -> Decision:
    if action == "emergency_read":
        # Break-glass is a professional's act; the patient reads through read_content (and a break-glass by
        # the patient would wrongly be logged and notified as an emergency override).
        return _deny("not_allowed")
    if document is not None and hidden_from_patient(document, today):
        # Stricter: hidden completely (listing and metadata too: a title can announce the diagnosis), and a
        # document the patient cannot see cannot be masked, unmasked or exported by them either.
        return _deny("hidden_until_announcement")
    return _allow(reason)  # masked documents stay visible to the patient and the representatives


def _is_attending(actor: Actor, record: Record) -> bool:
    # Stricter: attending powers only for a physician (the médecin traitant is one); any other profession
    # named attending is an ordinary professional.
    return record.attending_physician is not None and actor.id == record.attending_physician and actor.profession == "physician"


def _professional(actor: Actor, action: str, record: Record, document: DocumentView | None, matrix: AccessMatrix) -> Decision:
    if action == "read_access_log":
        if _is_attending(actor, record) and actor.id not in record.blocked:
            return _allow("attending_physician")
        # The professional concerned reads the entries about their own actions, in or out of the care team.
        return _allow("own_entries")
    if actor.id in record.blocked:
        # Stricter: the attending physician is not blockable by design (the patient changes the attending
        # physician instead), but if a record says both, the block wins.
        return _deny("blocked")
    if _is_attending(actor, record):
        if action in READ_ACTIONS or action in ("read_care_history", "block_professional"):
            return _allow("attending_physician")  # everything, masked documents included
        return _deny("not_allowed")
    if action in CONTROL_ACTIONS:
        return _deny("not_allowed")  # only the patient or a representative (and the attending physician for blocks)
    if actor.id not in record.care_team:
        return _deny("not_in_care_team")
    if actor.profession not in PROFESSIONS:
        return _deny("matrix_forbids")
    if action == "read_care_history":
        ok = matrix.allows(actor.profession, actor.specialty, *CARE_HISTORY)
        return _allow("care_team") if ok else _deny("matrix_forbids")
    if not _matrix_allows(matrix, actor.profession, actor.specialty, document):
        return _deny("matrix_forbids")
    if _masked_for(actor, document):
        return _deny("masked")
    return _allow("care_team")


def _occupational(actor: Actor, action: str, record: Record, document: DocumentView | None, matrix: AccessMatrix) -> Decision:
    """With express consent: reads what the matrix's occupational_physician rows allow; nothing else.

    Stricter: the consent stands in for care-team membership only; the block, the matrix and masking still
    apply, and the occupational physician has no control actions and no break-glass.
    """
    if action == "read_access_log":
        return _allow("own_entries")
    if actor.id in record.blocked:
        return _deny("blocked")
    if action == "read_care_history":
        ok = matrix.allows("occupational_physician", actor.specialty, *CARE_HISTORY)
        return _allow("occupational_consent") if ok else _deny("matrix_forbids")
    if action not in READ_ACTIONS:
        return _deny("not_allowed")
    if not _matrix_allows(matrix, "occupational_physician", actor.specialty, document):
        return _deny("matrix_forbids")
    if _masked_for(actor, document):
        return _deny("masked")
    return _allow("occupational_consent")


def _emergency(actor: Actor, record: Record, document: DocumentView | None, matrix: AccessMatrix, emergency_reason: str | None) -> Decision:
    if actor.kind == "professional":
        if actor.profession not in PROFESSIONS:
            return _deny("not_allowed")
        subject = actor.profession
    elif actor.kind == "emergency_regulator":
        subject = "emergency_regulator"
    else:
        return _deny("not_allowed")  # occupational physicians have no break-glass
    if not (emergency_reason and emergency_reason.strip()):
        return _deny("emergency_requires_reason")
    if record.emergency_opposed:
        return _deny("emergency_opposed")
    if actor.id in record.blocked:
        # Stricter: break-glass replaces a missing authorization, not the patient's explicit block.
        return _deny("blocked")
    if not _matrix_allows(matrix, subject, actor.specialty, document):
        return _deny("matrix_forbids")
    attending = actor.kind == "professional" and actor.profession == "physician" and actor.id == record.attending_physician
    if _masked_for(actor, document) and not attending:
        # Stricter: masking is the patient's explicit will and docs/domain.md lists who still sees a masked
        # document (patient, author or its facility, attending physician); break-glass alone is not on
        # that list. The attending physician is, with or without break-glass.
        return _deny("masked")
    return _allow("emergency_override", emergency=True)


# ---------------------------------------------------------------------------------------------
# What a decision lets an actor learn
# ---------------------------------------------------------------------------------------------


def knows_of_record(actor: Actor, record: Record) -> bool:
    """May `actor` learn that `record` exists, and so be told why it is refused to them (403 with a reason)?

    docs/domain.md, "Who may read" (no existence oracle): to an actor who may not learn it, a record that exists and one that does
    not look the same; such an actor is told a record-level denial as the 404 of a record that does not exist.
    The patient, their registered representatives, health professionals (a known profession, the SAMU
    regulator) and an occupational physician with the patient's consent may learn it. Stricter: nobody else,
    the forbidden parties of rule 6 included (their 403 `forbidden_party` on a record that exists and 404 on
    one that does not told them which ids are records).
    """
    if actor.kind == "patient":
        return actor.id == record.patient_id
    if actor.kind == "legal_representative":
        return actor.id in record.representatives
    if actor.kind == "professional":
        return actor.profession in PROFESSIONS
    if actor.kind == "emergency_regulator":
        return True
    if actor.kind == "occupational_physician":
        return actor.id in record.occupational_consent
    return False


def access_log_scope(decision: Decision) -> LogScope:
    """The part of the access log `decision` (an allowed `read_access_log`) opens.

    The patient and the attending physician read the whole chain, break-glass justifications included
    (docs/domain.md rule 5 and "Traceability"). A legal representative reads it as the patient does, except the
    patient's own actions: a minor consults the record in confidence (docs/domain.md rule 2); Stricter:
    whether an access was made in confidence is not recorded, so none of the patient's own actions is shown to
    a representative, minor or not, as documents hidden from representatives stay hidden whatever `is_minor`
    says. Every other reader ("own_entries") reads the entries about their own actions only.
    """
    if not decision.allowed:
        raise ValueError("the access log is not open to this reader")
    return LogScope(
        own_only=decision.reason == "own_entries",
        hides_patient=decision.reason == "legal_representative",
        justifications=decision.reason in ("patient", "attending_physician"),
    )
