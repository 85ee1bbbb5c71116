"""The named values of the index's state and kind columns.

Each is a `StrEnum` whose values are exactly the strings stored in the database and shown in the
public JSON (`dmp status --json`, the API): a member compares and hashes equal to its string and
`json.dumps` writes the string, so stored rows and published documents are unchanged. The columns
read them back as members (`EnumText` below), so `item.state is ItemState.INDEXED` holds after a load.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import String, TypeDecorator

Member = TypeVar("Member", bound=StrEnum)


class ItemState(StrEnum):
    """A batch item's (one document's) life: queued, taken by a worker, then final."""

    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    REJECTED = "rejected"


# Final item states: no worker will touch the item again (unless an operator retries it).
ITEM_FINAL = frozenset({ItemState.INDEXED, ItemState.REJECTED})
# Item states still waiting for, or held by, a worker.
ITEM_IN_FLIGHT = frozenset({ItemState.QUEUED, ItemState.PROCESSING})


class ChunkState(StrEnum):
    """A reimbursement feed chunk's life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"


class RecordStatus(StrEnum):
    """A patient's record: open, closed (kept ten years, then erased), or opposed (never filled)."""

    OPEN = "open"
    CLOSED = "closed"
    OPPOSED = "opposed"


class Relation(StrEnum):
    """How a person (or a facility) stands to a record (`record_relations.relation`)."""

    AUTHORIZED = "authorized"
    BLOCKED = "blocked"
    REPRESENTATIVE = "representative"
    OCCUPATIONAL_CONSENT = "occupational_consent"
    DECLARED_CONSENT = "declared_consent"  # a professional declared the patient present consents (actor: the professional)
    FACILITY = "facility"  # a facility authorized for a stay (actor: its FINESS number)
    ATTENDING_PROPOSAL = "attending_proposal"  # the successor the attending physician named (granted_by: them)


class DocumentStatus(StrEnum):
    """A document version's standing in its record (docs/domain.md, "Documents over time"). The values are
    FHIR DocumentReference.status's (IHE MHD): `current` is listed; `superseded` (replaced by a newer
    version, or deprecated by its source) stays readable through the document's history; `entered-in-error`
    (withdrawn by its source: sent in error) is crypto-shredded."""

    CURRENT = "current"
    SUPERSEDED = "superseded"
    ENTERED_IN_ERROR = "entered-in-error"


class VersionAction(StrEnum):
    """What a deposit says it does to the source's document of the same `source_document_id` (manifest
    column `version_action`): nothing said, a changed document is a `duplicate_conflict`."""

    REPLACE = "replace"


class PatientSection(StrEnum):
    """What the patient writes into their record besides documents (`patient_sections.kind`)."""

    MEDICAL_PROFILE = "medical_profile"
    EMERGENCY_CONTACTS = "emergency_contacts"


class OutboxKind(StrEnum):
    """An event to tell the patient (or their attending physician) about; also the notification's kind."""

    DOCUMENTS_ADDED = "documents_added"
    DOCUMENTS_RELEASED = "documents_released"  # held from the patient until an announcement, shown now
    DOCUMENT_WITHDRAWN = "document_withdrawn"
    REIMBURSEMENT_DATA = "reimbursement_data"
    FIRST_ACCESS = "first_access"
    ACCESS = "access"
    EMERGENCY_ACCESS = "emergency_access"
    EMERGENCY_ACCESS_TO_ATTENDING = "emergency_access_to_attending"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    COMPOSED = "composed"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class ChannelName(StrEnum):
    """Where a notification goes; `log` is the local sink for a person with no usable address."""

    EMAIL = "email"
    SMS = "sms"
    LOG = "log"


class FeedFormat(StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"


class AuditOutcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


class JobName(StrEnum):
    """A scheduled job that runs once a day (`job_runs.job`)."""

    RETENTION = "retention"
    # The scheduler's daily `dmp audit verify`; never a row itself: its runs are recorded as their verdict.
    AUDIT_VERIFY = "audit_verify"
    # `dmp audit verify` records its last verdict as a run under one of these (one row per day).
    AUDIT_VERIFY_OK = "audit_verify_ok"
    AUDIT_VERIFY_BROKEN = "audit_verify_broken"


class AttemptOutcome(StrEnum):
    """What one processing attempt on an item or a feed chunk came to (workers log it, tools count it)."""

    QUEUED = "queued"  # no verdict: the item or chunk waits again (its bytes are not in the inbox yet)
    INDEXED = "indexed"  # an item's document is in the index
    REJECTED = "rejected"  # an item's verdict is a rejection
    DONE = "done"  # a chunk's lines are stored
    SUPERSEDED = "superseded"  # another attempt took the item over; this one wrote nothing
    BUSY = "busy"  # a live attempt holds it: this message was a duplicate
    FINAL = "final"  # it was final already


class StatusKind(StrEnum):
    """What `dmp status --json` describes: a batch of documents or a reimbursement feed."""

    BATCH = "batch"
    FEED = "feed"


class EnumText(TypeDecorator[Member]):
    """A `String` column holding one `StrEnum`'s values: written as the plain string (the stored
    value does not change), read back as the member. Writing a string that is no member fails
    before it reaches the database."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[Member], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Any) -> Member | None:
        return None if value is None else self.enum(value)
