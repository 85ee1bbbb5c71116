"""The access policy: one pure function, `decide`, over the access matrix (`pipeline/access/matrix.py`).

Source of truth: the domain rules (docs/domain.md), sections "One record per patient", "Who may read", "What the
patient controls". `decide` does no I/O (the matrix is loaded once, validated at load) and never logs: the caller
(`pipeline/access/gate.py`) logs every attempt, and logs a decision with `emergency=True` as an emergency
override and notifies the patient and the attending physician.

Where docs/domain.md leaves room, the stricter reading for privacy is taken; each such place says "Stricter:".
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime

from pipeline.access.matrix import CARE_HISTORY, MATRIX_PATH, PROFESSIONS, AccessMatrix, default_matrix, load_matrix
from pipeline.access.membership import Grant, GrantBasis, care_team_basis, may_become_attending
from pipeline.access.vocabulary import Action, ActorKind, NotFound, Reason

__all__ = [
    "ACTIONS", "CONTROL_ACTIONS", "DOCUMENT_ACTIONS", "FORBIDDEN_KINDS", "KINDS", "MATRIX_PATH", "PATIENT_ONLY_ACTIONS", "PROFESSIONS",
    "READ_ACTIONS", "REASON_CODES", "AccessMatrix", "Action", "Actor", "ActorKind", "Decision", "DocumentView", "Grant", "GrantBasis",
    "LogScope", "Reason", "Record", "SECTION_VIEWS", "access_log_scope", "decide", "default_matrix", "hidden_from_patient", "hold_release",
    "is_attending", "knows_of_record", "load_matrix", "may_become_attending",
]  # fmt: skip

FORBIDDEN_KINDS = frozenset({ActorKind.EMPLOYER, ActorKind.INSURER, ActorKind.MUTUELLE, ActorKind.BANK})
KINDS = frozenset(ActorKind)

# LOOKUP (finding the record by INS) answers whether the actor may read it: decided as a record-level list.
READ_ACTIONS = frozenset({Action.LIST, Action.READ_METADATA, Action.READ_CONTENT, Action.LOOKUP})
CONTROL_ACTIONS = frozenset(
    {
        Action.MASK,
        Action.UNMASK,
        Action.AUTHORIZE_PROFESSIONAL,
        Action.BLOCK_PROFESSIONAL,
        Action.SET_ATTENDING_PHYSICIAN,
        Action.OPPOSE_EMERGENCY,
        Action.CLOSE_RECORD,
        Action.EXPORT,
        Action.SET_NOTIFICATIONS,
        Action.READ_NOTIFICATIONS,
        Action.REVOKE_CONSENT,
        Action.AUTHORIZE_FACILITY,
        Action.REVOKE_FACILITY,
        Action.READ_CARE_TEAM,
        Action.ACCEPT_ATTENDING_TRANSFER,
        Action.OPPOSE_RECORD,
        Action.LIFT_OPPOSITION,
        Action.SET_OCCUPATIONAL_CONSENT,
        Action.CONTRIBUTE,
    }
)
# A professional's own acts on the care team: never the patient's nor a representative's.
PROFESSIONAL_ACTIONS = frozenset({Action.DECLARE_CONSENT, Action.PROPOSE_ATTENDING_TRANSFER})
# The operator's, from civil-status or court documents; the operator reads nothing of the record.
OPERATOR_ACTIONS = frozenset({Action.SET_MINOR, Action.SET_REPRESENTATIVE})
# What the patient (or a representative) may still do on a record they opposed: lift the opposition, or close it.
OPPOSED_RECORD_ACTIONS = frozenset({Action.LIFT_OPPOSITION, Action.CLOSE_RECORD})
# The minor's own request to hide a document from their legal representatives (and to undo it): the
# patient's alone, never a representative's.
PATIENT_ONLY_ACTIONS = frozenset({Action.HIDE_FROM_REPRESENTATIVES, Action.SHOW_TO_REPRESENTATIVES})
ACTIONS = frozenset(Action)
# These need a document; the read actions accept None (record level).
DOCUMENT_ACTIONS = frozenset({Action.MASK, Action.UNMASK}) | PATIENT_ONLY_ACTIONS

REASON_CODES = frozenset(Reason)


@dataclass(frozen=True)
class Actor:
    id: str
    kind: ActorKind  # a kind outside ActorKind (a value not checked on the way in) is denied `not_allowed`
    profession: str | None = None  # for professionals: one of PROFESSIONS
    specialty: str | None = None  # e.g. psychiatry, general_practice
    facility_id: str | None = None


@dataclass(frozen=True)
class Record:
    patient_id: str
    status: str = "open"  # open | closed | opposed
    is_minor: bool = False
    representatives: frozenset[str] = frozenset()  # actor ids of legal representatives
    care_team: frozenset[str] = frozenset()  # authorized by the patient, until revoked
    blocked: frozenset[str] = frozenset()  # professionals the patient blocked
    attending_physician: str | None = None  # actor id (médecin traitant)
    emergency_opposed: bool = False
    occupational_consent: frozenset[str] = frozenset()  # occupational physicians with express consent
    grants: tuple[Grant, ...] = ()  # authorizations that may end, declared consents, facilities authorized for a stay
    # Professionals who authored a live document of the record (treated the patient); read from the index for the
    # actor decided for only (recordview.load_record), so a Record decides for that actor.
    authors: frozenset[str] = frozenset()
    as_of: datetime | None = None  # the moment the record was read: a grant is in force strictly before its end


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
    reason: Reason | NotFound  # NOT_FOUND only from the access gate (no such record or document), never from `decide`
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


# What the patient writes besides documents, as the policy sees it: a document they added (class 90), read under
# the same rules (docs/domain.md, "Documents over time"): the matrix's class-90 rows decide for professionals.
SECTION_VIEWS = {
    Action.READ_MEDICAL_PROFILE: DocumentView("medical-profile", "90", "medical_profile"),
    Action.READ_EMERGENCY_CONTACTS: DocumentView("emergency-contacts", "90", "emergency_contacts"),
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _plus_one_month(day: date) -> date:
    """The same day next month, clamped to the month's end (31 January -> 28/29 February)."""
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def hold_release(document: DocumentView) -> date | None:
    """The day a document its author holds until an announcement is shown to the patient: that date, or one
    month after its deposit if sooner. None when it is not held."""
    if document.hidden_from_patient_until is None:
        return None
    release = document.hidden_from_patient_until
    if document.deposited_on is not None:
        release = min(release, _plus_one_month(document.deposited_on))
    return release


def hidden_from_patient(document: DocumentView, today: date) -> bool:
    """Held by its author until an announcement, and neither that date nor one month after deposit has come."""
    release = hold_release(document)
    return release is not None and today < release


def _deny(reason: Reason) -> Decision:
    return Decision(False, reason)


def _allow(reason: Reason, emergency: bool = False) -> Decision:
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
    action: Action | str,
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
        return _deny(Reason.UNKNOWN_ACTION)  # Stricter: an action nobody wrote a rule for is denied, not guessed.
    return _decide(actor, Action(action), record, document, today, emergency_reason, matrix or default_matrix())


def _decide(
    actor: Actor,
    action: Action,
    record: Record,
    document: DocumentView | None,
    today: date,
    emergency_reason: str | None,
    matrix: AccessMatrix,
) -> Decision:
    if action in DOCUMENT_ACTIONS and document is None:
        raise ValueError(f"action {action.value!r} needs a document")
    # Rule 6: never allowed, whatever the token or the consent says; checked before anything else.
    if actor.kind in FORBIDDEN_KINDS:
        return _deny(Reason.FORBIDDEN_PARTY)
    if actor.kind == ActorKind.ADMINISTRATIVE:
        return _deny(Reason.ADMINISTRATIVE_STAFF)
    if actor.kind not in KINDS:
        return _deny(Reason.NOT_ALLOWED)

    # A closed or opposed record accepts nothing and is readable by nobody, the patient included: not even
    # the export or the access log (Stricter: reopening or a copy is a request handled outside this policy).
    # On a record they opposed the patient (or a representative) may only lift the opposition or close it.
    if record.status == "opposed" and action not in OPPOSED_RECORD_ACTIONS:
        return _deny(Reason.RECORD_OPPOSED)
    if record.status not in ("open", "opposed"):
        return _deny(Reason.RECORD_CLOSED)
    if actor.kind == ActorKind.OPERATOR:
        return _allow(Reason.OPERATOR) if action in OPERATOR_ACTIONS else _deny(Reason.NOT_ALLOWED)
    if action in OPERATOR_ACTIONS:
        return _deny(Reason.NOT_ALLOWED)
    if action == Action.READ_CARE_HISTORY and emergency_reason and emergency_reason.strip():
        # Break-glass on the care history, as on the documents: an emergency read of the reimbursement data
        # (class 60), decided below like any emergency read.
        action, document = Action.EMERGENCY_READ, CARE_HISTORY_VIEW
    if action in SECTION_VIEWS:
        # The medical profile and the emergency contacts: read as the class-90 document they stand for.
        document = SECTION_VIEWS[action]
        action = Action.EMERGENCY_READ if emergency_reason and emergency_reason.strip() else Action.READ_CONTENT
    if action in PATIENT_ONLY_ACTIONS and actor.kind != ActorKind.PATIENT:
        return _deny(Reason.NOT_ALLOWED)
    if action in PROFESSIONAL_ACTIONS and actor.kind != ActorKind.PROFESSIONAL:
        return _deny(Reason.NOT_ALLOWED)

    if actor.kind == ActorKind.PATIENT:
        if actor.id != record.patient_id:
            return _deny(Reason.NOT_ALLOWED)
        return _patient_or_representative(action, document, today, Reason.PATIENT)
    if actor.kind == ActorKind.LEGAL_REPRESENTATIVE:
        if actor.id not in record.representatives:
            return _deny(Reason.NOT_ALLOWED)
        if document is not None and document.hidden_from_representatives:
            # Applied whatever `is_minor` says (Stricter: the request stays honoured after a status change).
            return _deny(Reason.HIDDEN_FROM_REPRESENTATIVE)
        return _patient_or_representative(action, document, today, Reason.LEGAL_REPRESENTATIVE)
    if record.status != "open":
        return _deny(Reason.RECORD_OPPOSED)  # lifting or closing is the patient's

    if action == Action.EMERGENCY_READ:
        return _emergency(actor, record, document, matrix, emergency_reason)

    if actor.kind == ActorKind.OCCUPATIONAL_PHYSICIAN:
        if actor.id not in record.occupational_consent:
            return _deny(Reason.NO_CONSENT)
        return _occupational(actor, action, record, document, matrix)
    if actor.kind == ActorKind.EMERGENCY_REGULATOR:
        # The regulator reads only through break-glass while handling a call; it may read its own log entries.
        return _allow(Reason.OWN_ENTRIES) if action == Action.READ_ACCESS_LOG else _deny(Reason.NOT_ALLOWED)
    return _professional(actor, action, record, document, matrix)


def _patient_or_representative(action: Action, document: DocumentView | None, today: date, reason: Reason) -> Decision:
    if action == Action.EMERGENCY_READ:
        # Break-glass is a professional's act; the patient reads through read_content (and a break-glass by
        # the patient would wrongly be logged and notified as an emergency override).
        return _deny(Reason.NOT_ALLOWED)
    if document is not None and hidden_from_patient(document, today):
        # Stricter: hidden completely (listing and metadata too: a title can announce the diagnosis), and a
        # document the patient cannot see cannot be masked, unmasked or exported by them either.
        return _deny(Reason.HIDDEN_UNTIL_ANNOUNCEMENT)
    return _allow(reason)  # masked documents stay visible to the patient and the representatives


def is_attending(actor: Actor, record: Record) -> bool:
    """Whether `actor` is the record's attending physician (médecin traitant)."""
    # Stricter: attending powers only for a physician (the médecin traitant is one); any other profession
    # named attending is an ordinary professional.
    return record.attending_physician is not None and actor.id == record.attending_physician and actor.profession == "physician"


def _professional(actor: Actor, action: Action, record: Record, document: DocumentView | None, matrix: AccessMatrix) -> Decision:
    if action == Action.READ_ACCESS_LOG:
        if is_attending(actor, record) and actor.id not in record.blocked:
            return _allow(Reason.ATTENDING_PHYSICIAN)
        # The professional concerned reads the entries about their own actions, in or out of the care team.
        return _allow(Reason.OWN_ENTRIES)
    if actor.id in record.blocked:
        # Stricter: the attending physician is not blockable by design (the patient changes the attending
        # physician instead), but if a record says both, the block wins.
        return _deny(Reason.BLOCKED)
    attending_acts = (Action.READ_CARE_HISTORY, Action.BLOCK_PROFESSIONAL, Action.PROPOSE_ATTENDING_TRANSFER, Action.DECLARE_CONSENT)
    if is_attending(actor, record):
        if action in READ_ACTIONS or action in attending_acts:
            return _allow(Reason.ATTENDING_PHYSICIAN)  # everything, masked documents included
        return _deny(Reason.NOT_ALLOWED)
    if action in CONTROL_ACTIONS or action == Action.PROPOSE_ATTENDING_TRANSFER:
        return _deny(Reason.NOT_ALLOWED)  # only the patient or a representative (and the attending physician for blocks)
    if action == Action.DECLARE_CONSENT:
        # A professional of a known profession, the patient present: the declaration is what lets them in.
        return _allow(Reason.DECLARED_CONSENT) if actor.profession in PROFESSIONS else _deny(Reason.NOT_ALLOWED)
    basis = care_team_basis(actor.id, actor.facility_id, record)
    if basis is None:
        return _deny(Reason.NOT_IN_CARE_TEAM)
    if actor.profession not in PROFESSIONS:
        return _deny(Reason.MATRIX_FORBIDS)
    if action == Action.READ_CARE_HISTORY:
        ok = matrix.allows(actor.profession, actor.specialty, *CARE_HISTORY)
        return _allow(basis) if ok else _deny(Reason.MATRIX_FORBIDS)
    if not _matrix_allows(matrix, actor.profession, actor.specialty, document):
        return _deny(Reason.MATRIX_FORBIDS)
    if _masked_for(actor, document):
        return _deny(Reason.MASKED)
    return _allow(basis)


def _occupational(actor: Actor, action: Action, record: Record, document: DocumentView | None, matrix: AccessMatrix) -> Decision:
    """With express consent: reads what the matrix's occupational_physician rows allow; nothing else.

    Stricter: the consent stands in for care-team membership only; the block, the matrix and masking still
    apply, and the occupational physician has no control actions and no break-glass.
    """
    if action == Action.READ_ACCESS_LOG:
        return _allow(Reason.OWN_ENTRIES)
    if actor.id in record.blocked:
        return _deny(Reason.BLOCKED)
    if action == Action.READ_CARE_HISTORY:
        ok = matrix.allows(ActorKind.OCCUPATIONAL_PHYSICIAN, actor.specialty, *CARE_HISTORY)
        return _allow(Reason.OCCUPATIONAL_CONSENT) if ok else _deny(Reason.MATRIX_FORBIDS)
    if action not in READ_ACTIONS:
        return _deny(Reason.NOT_ALLOWED)
    if not _matrix_allows(matrix, ActorKind.OCCUPATIONAL_PHYSICIAN, actor.specialty, document):
        return _deny(Reason.MATRIX_FORBIDS)
    if _masked_for(actor, document):
        return _deny(Reason.MASKED)
    return _allow(Reason.OCCUPATIONAL_CONSENT)


def _emergency(actor: Actor, record: Record, document: DocumentView | None, matrix: AccessMatrix, emergency_reason: str | None) -> Decision:
    if actor.kind == ActorKind.PROFESSIONAL:
        if actor.profession not in PROFESSIONS:
            return _deny(Reason.NOT_ALLOWED)
        subject = actor.profession
    elif actor.kind == ActorKind.EMERGENCY_REGULATOR:
        subject = ActorKind.EMERGENCY_REGULATOR
    else:
        return _deny(Reason.NOT_ALLOWED)  # occupational physicians have no break-glass
    if not (emergency_reason and emergency_reason.strip()):
        return _deny(Reason.EMERGENCY_REQUIRES_REASON)
    if record.emergency_opposed:
        return _deny(Reason.EMERGENCY_OPPOSED)
    if actor.id in record.blocked:
        # Stricter: break-glass replaces a missing authorization, not the patient's explicit block.
        return _deny(Reason.BLOCKED)
    if not _matrix_allows(matrix, subject, actor.specialty, document):
        return _deny(Reason.MATRIX_FORBIDS)
    attending = actor.kind == ActorKind.PROFESSIONAL and actor.profession == "physician" and actor.id == record.attending_physician
    if _masked_for(actor, document) and not attending:
        # Stricter: masking is the patient's explicit will and docs/domain.md lists who still sees a masked
        # document (patient, author or its facility, attending physician); break-glass alone is not on
        # that list. The attending physician is, with or without break-glass.
        return _deny(Reason.MASKED)
    return _allow(Reason.EMERGENCY_OVERRIDE, emergency=True)


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
    if actor.kind == ActorKind.PATIENT:
        return actor.id == record.patient_id
    if actor.kind == ActorKind.LEGAL_REPRESENTATIVE:
        return actor.id in record.representatives
    if actor.kind == ActorKind.PROFESSIONAL:
        return actor.profession in PROFESSIONS
    if actor.kind == ActorKind.EMERGENCY_REGULATOR:
        return True
    if actor.kind == ActorKind.OCCUPATIONAL_PHYSICIAN:
        return actor.id in record.occupational_consent
    return False  # Stricter: the operator too (it works from the INS it was given, never from a record id)


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
        own_only=decision.reason == Reason.OWN_ENTRIES,
        hides_patient=decision.reason == Reason.LEGAL_REPRESENTATIVE,
        justifications=decision.reason in (Reason.PATIENT, Reason.ATTENDING_PHYSICIAN),
    )
