"""The reads the entry and adapter layers need (API routes, the demo), so that none of them builds SQL.

The access policy's own reads (the record and its documents as `decide` sees them) are in
pipeline/access/recordview.py; the item and batch transitions in pipeline/index/repo.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.index.models import Batch, Document, Feed, Notification, Patient
from pipeline.index.repo import documents_by_id
from pipeline.index.states import RecordStatus

__all__ = [
    "batch_of_source", "demo_patients", "documents_by_id", "feed_of_source", "fullest_record", "live_documents", "notifications_of",
    "patient", "sent_notification", "source_reference",
]  # fmt: skip


def live_documents(session: Session, patient_id: str) -> list[Document]:
    """Every live document of the record, oldest service date first (what an export holds, before the policy)."""
    query = select(Document).where(Document.patient_id == patient_id, Document.live).order_by(Document.service_date, Document.id)
    return list(session.scalars(query))


def patient(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def fullest_record(session: Session) -> tuple[str, int] | None:
    """The patient with the most documents, and how many (the demo shows that record)."""
    row = session.execute(
        select(Document.patient_id, func.count()).group_by(Document.patient_id).order_by(func.count().desc()).limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def demo_patients(session: Session, limit: int) -> list[tuple[str, str]]:
    """(patient id, INS) of the open records with the most documents: the identities the embedded portal's demo sign-in offers."""
    counts = select(Document.patient_id, func.count().label("n")).group_by(Document.patient_id).subquery()
    rows = session.execute(
        select(Patient.id, Patient.ins).join(counts, counts.c.patient_id == Patient.id)
        .where(Patient.status == RecordStatus.OPEN).order_by(counts.c.n.desc(), Patient.id).limit(limit)
    ).all()  # fmt: skip
    return [(row[0], row[1]) for row in rows]


def sent_notification(session: Session, patient_id: str, kind: str) -> Notification | None:
    """A message of `kind` already sent to the patient, if any."""
    query = select(Notification).where(Notification.patient_id == patient_id, Notification.kind == kind, Notification.status == "sent")
    return session.scalars(query).first()


def notifications_of(session: Session, patient_id: str) -> Sequence[Notification]:
    """The patient's messages, oldest first."""
    return session.scalars(select(Notification).where(Notification.patient_id == patient_id).order_by(Notification.created_at)).all()


def batch_of_source(session: Session, batch_id: str, source: str) -> Batch | None:
    """The batch, if `source` sent it: a source sees its own batches only."""
    batch = session.get(Batch, batch_id)
    return batch if batch is not None and batch.source == source else None


def feed_of_source(session: Session, feed_id: str, source: str) -> Feed | None:
    """The feed, if `source` sent it: a source sees its own feeds only."""
    feed = session.get(Feed, feed_id)
    return feed if feed is not None and feed.source == source else None


def source_reference(session: Session, document_id: str) -> tuple[str, str, str] | None:
    """How the document's source names it, and whose it is: (source, source_document_id, patient INS), or None."""
    row = session.execute(
        select(Document.source, Document.source_document_id, Patient.ins)
        .join(Patient, Patient.id == Document.patient_id)
        .where(Document.id == document_id)
    ).first()
    return None if row is None else (row[0], row[1], row[2])
