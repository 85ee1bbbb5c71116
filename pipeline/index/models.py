"""Index tables. Uniqueness is enforced by constraints, not checks, so at-least-once delivery
cannot create a second document, object or outbox row."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    SQLColumnExpression,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

# `Base` re-exported: its metadata holds every table only once this module is loaded (migrations, schema checks).
from pipeline.index.base import Base as Base
from pipeline.index.base import UtcDateTime, new_id
from pipeline.index.states import (
    ChannelName,
    ChunkState,
    DocumentStatus,
    EnumText,
    FeedFormat,
    ItemState,
    JobName,
    NotificationStatus,
    OutboxKind,
    OutboxStatus,
    PatientSection,
    RecordStatus,
    Relation,
)


def _now() -> Mapped[dt.datetime]:
    return mapped_column(UtcDateTime(), server_default=func.now())


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    ins: Mapped[str] = mapped_column(String(15), unique=True)
    status: Mapped[RecordStatus] = mapped_column(EnumText(RecordStatus, 16), default=RecordStatus.OPEN)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # The patient's choices (docs/domain.md, "What the patient controls").
    attending_physician_id: Mapped[str | None] = mapped_column(String(128))
    emergency_opposed: Mapped[bool] = mapped_column(default=False, server_default=false())
    is_minor: Mapped[bool] = mapped_column(default=False, server_default=false())
    notify_email: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_sms: Mapped[bool] = mapped_column(default=False, server_default=false())
    notify_every_access: Mapped[bool] = mapped_column(default=False, server_default=false())
    notify_documents: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_reimbursements: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[dt.datetime] = _now()


class Contact(Base):
    """Where a person is told things: a patient (id = patient id) or a professional (id = RPPS / actor id).

    An address a channel rejected for good keeps the rejection code, shown in the person's settings,
    and is not used again until it is changed.
    """

    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Sealed (pipeline/core/sealedfields.py): a patient's under the record key, a professional's under the
    # contact's own key below, wrapped by a master key (a professional belongs to no record).
    email_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_key_id: Mapped[str | None] = mapped_column(String(256))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    email_rejected: Mapped[str | None] = mapped_column(String(64))
    phone_rejected: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = _now()


class RecordRelation(Base):
    """Who stands in which relation to a record: authorized or blocked professional, legal
    representative, occupational physician with express consent, declared consent, facility authorized for
    a stay (actor_id: its FINESS), the attending physician's proposed successor."""

    __tablename__ = "record_relations"
    __table_args__ = (UniqueConstraint("patient_id", "actor_id", "relation"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    actor_id: Mapped[str] = mapped_column(String(128))
    relation: Mapped[Relation] = mapped_column(EnumText(Relation, 32))
    created_at: Mapped[dt.datetime] = _now()
    # An authorization, declared consent or facility authorization ends at this moment (None: until revoked).
    until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # Who set it when it is not the patient: the professional declaring consent, the physician proposing a successor.
    granted_by: Mapped[str | None] = mapped_column(String(128))


class RecordKey(Base):
    """A patient's record key, wrapped by a master key. Destroying it erases the whole record."""

    __tablename__ = "record_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), unique=True)
    master_key_id: Mapped[str | None] = mapped_column(String(256), index=True)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once destroyed
    created_at: Mapped[dt.datetime] = _now()
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class RecordChanges(Base):
    """One row (id 1) counting the records closed and the record keys destroyed or deleted, bumped by PostgreSQL
    triggers in the transaction that makes the change (migration 0020): a feed worker keeps the records it read until
    the count moves (pipeline/carehistory/knownrecords.py)."""

    __tablename__ = "record_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    changes: Mapped[int] = mapped_column(BigInteger)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("source", "manifest_digest"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(128))
    # Keyed hash of the manifest bytes: the same manifest from the same source is the same batch.
    manifest_digest: Mapped[str] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(Integer, default=0)
    # The key sealing its items' titles while they wait (the patient may not exist yet), wrapped by a master key.
    master_key_id: Mapped[str | None] = mapped_column(String(256))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = _now()
    # When the intake had sent every item's message: from then on an unfinished item with no message
    # anywhere in the broker lost it, and the recovery sweep sends it again (pipeline/workers/recovery.py).
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class BatchItem(Base):
    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "slot"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    # "row:N" for a manifest row, "file:NAME" for a file the manifest does not list.
    slot: Mapped[str] = mapped_column(String(512))
    file: Mapped[str] = mapped_column(String(512))
    row_number: Mapped[int | None] = mapped_column(Integer)
    source_document_id: Mapped[str | None] = mapped_column(String(256))
    patient_ins: Mapped[str | None] = mapped_column(String(32))
    # Sealed under the batch key; dropped once the item is final (an indexed document keeps its own).
    title_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    document_type: Mapped[str | None] = mapped_column(String(128))
    service_date: Mapped[str | None] = mapped_column(String(32))
    author_id: Mapped[str | None] = mapped_column(String(64))
    author_profession: Mapped[str | None] = mapped_column(String(64))
    announcement_date: Mapped[str | None] = mapped_column(String(32))
    # VersionAction's value ("replace") or None: what the deposit does to the source's earlier document.
    version_action: Mapped[str | None] = mapped_column(String(16))
    # The document-sharing metadata given with the item (manifest's optional columns, MHD): JSON, copied
    # to `document_sharing` when the document is indexed (pipeline/sharing/metadata.py).
    sharing: Mapped[str | None] = mapped_column(Text)

    state: Mapped[ItemState] = mapped_column(EnumText(ItemState, 16), default=ItemState.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    # attempts: processing starts; crashes: starts that found the previous one unfinished
    # (its worker died or hit an unexpected error). Too many crashes sets the item aside.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    crashes: Mapped[int] = mapped_column(Integer, default=0)
    inbox_key: Mapped[str | None] = mapped_column(String(256), index=True)  # still_waited_on asks by it
    # Set when the inbox object is an uploaded zip shared by the batch: the entry holding this document.
    inbox_member: Mapped[str | None] = mapped_column(Text)
    # Object written by the current attempt; removed if that attempt does not commit.
    pending_object_key: Mapped[str | None] = mapped_column(String(256))
    document_id: Mapped[str] = mapped_column(String(36), default=new_id)
    quarantine_key: Mapped[str | None] = mapped_column(String(256))
    # The quarantine copy's data key, wrapped directly by a master key (the patient may be unknown).
    quarantine_master_key_id: Mapped[str | None] = mapped_column(String(256))
    quarantine_wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    quarantine_until: Mapped[dt.date | None] = mapped_column(Date)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())  # latest attempt
    # A live worker process is on the item until then (it renews the lease while it holds the item's
    # message); a lapsed lease means a dead worker. A final item keeps it until its inbox copy is
    # deleted (pipeline/workers/recovery.py).
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), server_default=func.now(), onupdate=func.now())


class Document(Base):
    """One version of a source's document. Versions of one document share (source, source_document_id) and
    are numbered from 1; the newest not withdrawn nor deprecated is `current` (pipeline/documents/versions.py)."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("source", "source_document_id", "version", name="uq_documents_source_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    source: Mapped[str] = mapped_column(String(128))
    source_document_id: Mapped[str] = mapped_column(String(256))
    batch_item_id: Mapped[str] = mapped_column(ForeignKey("batch_items.id"), unique=True)
    # Sealed under the record key (pipeline/core/sealedfields.py): destroying the record shreds it too.
    title_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    class_code: Mapped[str] = mapped_column(String(8))
    type_code: Mapped[str] = mapped_column(String(32))
    classified_by: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(default=1.0)
    needs_review: Mapped[bool] = mapped_column(default=False)
    masked: Mapped[bool] = mapped_column(default=False, server_default=false())
    hidden_from_patient_until: Mapped[dt.date | None] = mapped_column(Date)
    hidden_from_representatives: Mapped[bool] = mapped_column(default=False, server_default=false())
    service_date: Mapped[dt.date | None] = mapped_column(Date)
    author_id: Mapped[str | None] = mapped_column(String(64))
    author_profession: Mapped[str | None] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    content_hmac: Mapped[str] = mapped_column(String(64), index=True)
    object_key: Mapped[str] = mapped_column(String(256), unique=True)
    # The data key, wrapped by the patient's record key; None once the document is shredded.
    record_key_id: Mapped[str] = mapped_column(ForeignKey("record_keys.id"), index=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    shredded_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[dt.datetime] = _now()
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[DocumentStatus] = mapped_column(
        EnumText(DocumentStatus, 24), default=DocumentStatus.CURRENT, server_default=DocumentStatus.CURRENT.value
    )
    supersedes_id: Mapped[str | None] = mapped_column(String(36))  # the version this one replaced
    superseded_by_id: Mapped[str | None] = mapped_column(String(36))  # the version that replaced this one
    status_changed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())

    @hybrid_property
    def live(self) -> bool:
        """The document is part of the record: not shredded (its data key is still wrapped). Decided here
        only: every read of a record's documents filters on `Document.live`."""
        return self.wrapped_key is not None

    @live.inplace.expression
    @classmethod
    def _live_expression(cls) -> ColumnElement[bool]:
        return _live(cls.wrapped_key)


def _live(wrapped_key: SQLColumnExpression[bytes | None]) -> ColumnElement[bool]:
    return wrapped_key.is_not(None)


# `Document.live` on the table's own column: a statement of table columns only stays a Core statement (no ORM
# compile step on each execution: the listing's statements, run on every list request, pipeline/access/listing.py).
LIVE_DOCUMENT = _live(cast(Table, Document.__table__).c.wrapped_key)


# A record's listing (pipeline/access/listing.py) in its order: a page without sorting the record.
Index("ix_documents_patient_listing", Document.patient_id, Document.service_date.desc(), Document.id)
# Whether the actor of a request authored a document of the record (has treated the patient): one probe per access.
Index("ix_documents_patient_author", Document.patient_id, Document.author_id)
# The documents held from their patient until an announcement, few among all: each notification pass looks
# for those whose hold has just ended (pipeline/notify/releases.py).
_HELD = Document.hidden_from_patient_until.is_not(None)
Index("ix_documents_held", Document.hidden_from_patient_until, Document.created_at, postgresql_where=_HELD, sqlite_where=_HELD)


class PatientSectionRow(Base):
    """What the patient wrote into the record besides documents: the medical profile, the emergency contacts.

    One row per record and section, its content JSON sealed under the record key (pipeline/core/sealedfields.py):
    destroying the record shreds it with the rest. Read under the policy as a class-90 document
    (pipeline/record/sections.py)."""

    __tablename__ = "patient_sections"
    __table_args__ = (UniqueConstraint("patient_id", "kind"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[PatientSection] = mapped_column(EnumText(PatientSection, 32))
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), server_default=func.now(), onupdate=func.now())


class DocumentSharing(Base):
    """A document's document-sharing metadata (IHE XDS/MHD, French PDSm) that the documents table lacks.

    One row per document that has any; codes only, from the value sets of pipeline/sharing/data. The
    status and version are not here: they are the document's life (pipeline/sharing/metadata.py `status_of`).
    """

    __tablename__ = "document_sharing"

    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    unique_id: Mapped[str | None] = mapped_column(String(256))
    confidentiality: Mapped[str | None] = mapped_column(String(16))
    practice_setting: Mapped[str | None] = mapped_column(String(64))
    facility_type: Mapped[str | None] = mapped_column(String(64))
    format_code: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(16))
    event_codes: Mapped[str | None] = mapped_column(String(512))  # space-separated codes
    author_given: Mapped[str | None] = mapped_column(String(128))
    author_family: Mapped[str | None] = mapped_column(String(128))
    author_facility: Mapped[str | None] = mapped_column(String(256))


class SubmissionSet(Base):
    """An MHD submission (ITI-65) by its SubmissionSet unique id, per source: a replay finds its batch and the
    versions its status changes changed."""

    __tablename__ = "submission_sets"
    __table_args__ = (UniqueConstraint("source", "unique_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(128))
    unique_id: Mapped[str] = mapped_column(String(256))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)  # None: status changes only
    # JSON {Bundle entry: the document version its status change changed}, once applied (None: none to apply).
    changes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()


class Outbox(Base):
    """Events to tell the patient about, written in the transaction of the change they report.

    One row per event (a batch or feed per patient, an access), never one per item. The dispatcher turns
    due rows into messages (`notifications`) and marks them `composed` in the same transaction, so an
    event gives its messages exactly once whatever crashes.
    """

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("patient_id", "kind", "ref_id"), Index("ix_outbox_status_patient", "status", "patient_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[OutboxKind] = mapped_column(EnumText(OutboxKind, 32))
    ref_id: Mapped[str] = mapped_column(String(36))  # the batch, feed or audit entry that caused it
    source: Mapped[str] = mapped_column(String(128))  # who: the depositing source or "kind:actor id"
    detail: Mapped[str | None] = mapped_column(String(64))  # the actor's profession, when an actor
    created_at: Mapped[dt.datetime] = _now()
    status: Mapped[OutboxStatus] = mapped_column(
        EnumText(OutboxStatus, 16), default=OutboxStatus.PENDING, server_default=OutboxStatus.PENDING.value
    )
    composed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class Notification(Base):
    """One message to one person on one channel. Its id is the idempotency key handed to the channel."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_next", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    recipient_id: Mapped[str] = mapped_column(String(128))  # the patient, or the attending physician
    kind: Mapped[OutboxKind] = mapped_column(EnumText(OutboxKind, 32))
    channel: Mapped[ChannelName] = mapped_column(EnumText(ChannelName, 8))
    address_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # under the patient's record key
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    events: Mapped[int] = mapped_column(Integer, default=1)  # outbox rows it reports
    status: Mapped[NotificationStatus] = mapped_column(EnumText(NotificationStatus, 16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = _now()
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class Feed(Base):
    """One reimbursement feed file from the insurer. The same content from the same source is the same feed."""

    __tablename__ = "feeds"
    __table_args__ = (UniqueConstraint("source", "digest"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    format: Mapped[FeedFormat] = mapped_column(EnumText(FeedFormat, 8))
    header: Mapped[str | None] = mapped_column(Text)  # CSV: the header's field names, comma-joined
    lines: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = _now()
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())  # as Batch.sent_at


class FeedChunk(Base):
    __tablename__ = "feed_chunks"
    __table_args__ = (UniqueConstraint("feed_id", "number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    feed_id: Mapped[str] = mapped_column(ForeignKey("feeds.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    first_line: Mapped[int] = mapped_column(Integer)  # line number in the file of the chunk's first line
    lines: Mapped[int] = mapped_column(Integer)
    state: Mapped[ChunkState] = mapped_column(EnumText(ChunkState, 16), default=ChunkState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    inbox_key: Mapped[str | None] = mapped_column(String(256))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())  # as BatchItem.lease_until


class FeedRejection(Base):
    __tablename__ = "feed_rejections"
    __table_args__ = (UniqueConstraint("feed_id", "line_number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    feed_id: Mapped[str] = mapped_column(ForeignKey("feeds.id"), index=True)
    line_number: Mapped[int] = mapped_column(Integer)
    line_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


class CareEvent(Base):
    """One reimbursed care line. Read through the 24-month window; pruned by retention."""

    __tablename__ = "care_events"
    __table_args__ = (
        UniqueConstraint("source", "line_id"),
        Index("ix_care_events_patient_date", "patient_id", "care_date"),
        # Finding the corrections that name a line, without scanning every line.
        Index(
            "ix_care_events_supersedes",
            "source",
            "supersedes",
            postgresql_where=text("supersedes IS NOT NULL"),
            sqlite_where=text("supersedes IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(128))
    line_id: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    care_date: Mapped[dt.date] = mapped_column(Date, index=True)
    # act_code, act_label, professional_id, professional_name, profession: sealed under the record key
    # (pipeline/carehistory/history.py); no query looks them up.
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    amount_billed: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    amount_reimbursed: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    reimbursement_date: Mapped[dt.date] = mapped_column(Date)
    supersedes: Mapped[str | None] = mapped_column(String(128))
    superseded_by: Mapped[str | None] = mapped_column(String(128))
    # To tell a re-send from a conflicting line: keyed by the record key, so a dump cannot confirm a guessed line.
    content_hash: Mapped[str] = mapped_column(String(64))
    feed_id: Mapped[str] = mapped_column(String(36))


class JobRun(Base):
    """Which scheduled job ran for which day: a second run for the same day does nothing."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "run_date"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    job: Mapped[JobName] = mapped_column(EnumText(JobName, 64))
    run_date: Mapped[dt.date] = mapped_column(Date)
    started_at: Mapped[dt.datetime] = _now()


class AuditEntry(Base):
    """One access attempt, allowed or denied. Append-only; chained per patient by a keyed hash."""

    __tablename__ = "audit_entries"
    __table_args__ = (UniqueConstraint("chain", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(64))  # the patient id, or "-" when no patient is known
    seq: Mapped[int] = mapped_column(Integer)  # position in the chain, from 1
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    actor_id: Mapped[str] = mapped_column(String(128))
    actor_kind: Mapped[str] = mapped_column(String(32))
    profession: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    document_id: Mapped[str | None] = mapped_column(String(36))
    # AuditOutcome's values, read back as plain strings: `dmp audit verify` must read a tampered row to report it.
    outcome: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    emergency: Mapped[bool] = mapped_column(default=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    # The canonical encoding its hash covers (pipeline/access/audit.py sets it); entries older than the column are 1.
    version: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    told_reason: Mapped[str | None] = mapped_column(String(64))  # what the actor was answered, when not `reason` (404 not_found)
    # The break-glass reason the actor gave, sealed under the record key (pipeline/core/sealedfields.py).
    justification_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class Source(Base):
    """A system that pushes over HTTP (`hospital:ID`, `lab:ID`, `insurer:ID`) and its API key.

    Only a keyed hash of the secret is kept (HMAC-SHA-256 under a key derived from the key file's
    secret): the secret is random and long, so a slow password hash would add nothing but latency.
    """

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = _now()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class IdempotencyRecord(Base):
    """The first answer to a submission sent with an `Idempotency-Key`, per source.

    `status` is None while the first request runs; it holds a lease that the request renews, so a
    key left behind by a dead API process can be taken over once the lease has run out.
    """

    __tablename__ = "idempotency_keys"

    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    route: Mapped[str] = mapped_column(String(32))
    content_length: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[dt.datetime] = _now()


class PortalSessionRow(Base):
    """A web portal session, shared by every API process (api/portal/sessions.py).

    The session id (the cookie's value) is stored only as a keyed hash, so a dump of the index cannot
    sign anyone in; the content (CSRF token, claims, choices) is sealed. `expires_at` is the earlier of
    the idle and the absolute limit; sign-out deletes the row; expired rows are purged as sessions are made.
    """

    __tablename__ = "portal_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
