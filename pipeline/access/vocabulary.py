"""The access policy's words: who acts (actor kinds), what they ask (actions), why the answer (reasons).

The values are public (tokens carry the kinds, the audit log and the API's 403 problems the actions and
reasons): each member's value is the exact string the platform has always used. StrEnum members compare
equal to those strings, so a kind read from a token or a row matches its member.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class ActorKind(StrEnum):
    """Who the caller is, as their token says (`kind`)."""

    PATIENT = "patient"
    LEGAL_REPRESENTATIVE = "legal_representative"
    PROFESSIONAL = "professional"
    EMERGENCY_REGULATOR = "emergency_regulator"  # the SAMU regulator
    ADMINISTRATIVE = "administrative"
    OCCUPATIONAL_PHYSICIAN = "occupational_physician"
    # The platform's operator (registration desk): sets a record's minor status and its legal representatives
    # from civil-status or court documents; reads nothing of the record.
    OPERATOR = "operator"
    # Rule 6: never allowed, whatever the token or the consent says.
    EMPLOYER = "employer"
    INSURER = "insurer"
    MUTUELLE = "mutuelle"
    BANK = "bank"


class Action(StrEnum):
    """What an actor asks to do on a record (or one of its documents)."""

    # reads
    LIST = "list"
    READ_METADATA = "read_metadata"
    READ_CONTENT = "read_content"
    # what the patient controls
    MASK = "mask"
    UNMASK = "unmask"
    AUTHORIZE_PROFESSIONAL = "authorize_professional"
    BLOCK_PROFESSIONAL = "block_professional"
    SET_ATTENDING_PHYSICIAN = "set_attending_physician"
    OPPOSE_EMERGENCY = "oppose_emergency"
    CLOSE_RECORD = "close_record"
    EXPORT = "export"
    SET_NOTIFICATIONS = "set_notifications"
    READ_NOTIFICATIONS = "read_notifications"
    # the minor's own request to hide a document from their legal representatives (and to undo it)
    HIDE_FROM_REPRESENTATIVES = "hide_from_representatives"
    SHOW_TO_REPRESENTATIVES = "show_to_representatives"
    # the rest
    READ_CARE_HISTORY = "read_care_history"
    READ_ACCESS_LOG = "read_access_log"
    EMERGENCY_READ = "emergency_read"  # break-glass
    # finding a record by the patient's INS (POST /v1/records/lookup): decided as a record-level read
    LOOKUP = "lookup"
    # the care team over time (docs/domain.md, "Finding a record, and the care team over time")
    DECLARE_CONSENT = "declare_consent"  # a professional declares that the patient present consents
    REVOKE_CONSENT = "revoke_consent"  # the patient revokes a declared consent
    AUTHORIZE_FACILITY = "authorize_facility"  # the patient authorizes a facility (FINESS) for a stay
    REVOKE_FACILITY = "revoke_facility"
    READ_CARE_TEAM = "read_care_team"  # the patient reads who is in the care team, and why
    PROPOSE_ATTENDING_TRANSFER = "propose_attending_transfer"  # the attending physician names a successor
    ACCEPT_ATTENDING_TRANSFER = "accept_attending_transfer"  # the patient agrees to it
    # the record itself
    OPPOSE_RECORD = "oppose_record"
    LIFT_OPPOSITION = "lift_opposition"
    SET_OCCUPATIONAL_CONSENT = "set_occupational_consent"  # the patient's express consent to an occupational physician
    # the operator's
    SET_MINOR = "set_minor"
    SET_REPRESENTATIVE = "set_representative"


class Reason(StrEnum):
    """Why `decide` allowed or denied: the `reason` of an audit entry and the `code` of a 403."""

    # allowed
    PATIENT = "patient"
    LEGAL_REPRESENTATIVE = "legal_representative"
    ATTENDING_PHYSICIAN = "attending_physician"
    CARE_TEAM = "care_team"
    OCCUPATIONAL_CONSENT = "occupational_consent"
    EMERGENCY_OVERRIDE = "emergency_override"
    OWN_ENTRIES = "own_entries"
    TREATED_PATIENT = "treated_patient"  # the professional authored a document of the record
    DECLARED_CONSENT = "declared_consent"  # the professional declared the patient's consent
    FACILITY_AUTHORIZED = "facility_authorized"  # the professional's facility is authorized for a stay
    OPERATOR = "operator"
    # denied
    RECORD_CLOSED = "record_closed"
    RECORD_OPPOSED = "record_opposed"
    FORBIDDEN_PARTY = "forbidden_party"
    ADMINISTRATIVE_STAFF = "administrative_staff"
    NO_CONSENT = "no_consent"
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_ACTION = "unknown_action"
    HIDDEN_UNTIL_ANNOUNCEMENT = "hidden_until_announcement"
    HIDDEN_FROM_REPRESENTATIVE = "hidden_from_representative"
    BLOCKED = "blocked"
    NOT_IN_CARE_TEAM = "not_in_care_team"
    MATRIX_FORBIDS = "matrix_forbids"
    MASKED = "masked"
    EMERGENCY_OPPOSED = "emergency_opposed"
    EMERGENCY_REQUIRES_REASON = "emergency_requires_reason"


# Not the policy's: the access gate's answer when there is no such record or document for this actor, or
# when the policy's reason must not be told (the record or the document is one the actor may not know of).
NotFound = Literal["not_found"]
NOT_FOUND: NotFound = "not_found"
