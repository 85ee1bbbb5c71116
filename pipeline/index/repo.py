"""Queries and state transitions on the index. Every transition is one short transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, String, any_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipeline.index.models import Batch, BatchItem, Document, Outbox, Patient, new_id
from pipeline.keys import WrappedKey

FINAL_STATES = ("indexed", "rejected")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def insert_ignore(session: Session, model: type, values: dict | list[dict]) -> None:
    """INSERT … ON CONFLICT DO NOTHING (one row, or many as one executemany) on SQLite and PostgreSQL:
    the unique constraint decides, not a check."""
    rows = values if isinstance(values, list) else [values]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # One cached statement; SQLAlchemy batches the rows ("insertmanyvalues") within driver limits.
    session.execute(dialect.insert(model).on_conflict_do_nothing(), rows)


def among(session: Session, column: ColumnElement, values: Collection[str]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL one array parameter (`= ANY(…)`) rather than one per value,
    which thousands of values (a feed chunk's patients) make far cheaper to send and plan."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String)))
    return column.in_(values)


@dataclass(frozen=True)
class Quarantine:
    """Where a rejected document's encrypted copy is, until when, and its wrapped data key."""

    object_key: str
    until: dt.date
    wrapped: WrappedKey


@dataclass(frozen=True)
class Claim:
    """The right to run one processing attempt on an item."""

    item: BatchItem
    attempt: int
    previous_pending_key: str | None


def claim_item(session: Session, item_id: str) -> Claim | None:
    """Start an attempt: count it and return the item, or None if the item is already final.

    The counters are committed before any work, so a file that kills its worker is still
    counted when the broker redelivers its message (dramatiq does not count that as a retry).
    """
    item = session.get(BatchItem, item_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if item is None or item.state in FINAL_STATES:
        session.rollback()
        return None
    previous = item.pending_object_key
    if item.state == "processing":
        item.crashes += 1
    item.attempts += 1
    item.started_at = _utcnow()
    item.state = "processing"
    item.pending_object_key = f"docs/{item.document_id}.{item.attempts}"
    session.commit()
    return Claim(item, item.attempts, previous)


def _still_mine(session: Session, claim: Claim) -> BatchItem | None:
    item = session.get(BatchItem, claim.item.id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if item is None or item.state != "processing" or item.attempts != claim.attempt:
        return None
    return item


def ensure_patient(session: Session, ins: str) -> Patient:
    insert_ignore(session, Patient, {"id": new_id(), "ins": ins, "status": "open"})
    return session.scalars(select(Patient).where(Patient.ins == ins)).one()


def find_document(session: Session, source: str, source_document_id: str) -> Document | None:
    return session.scalars(
        select(Document).where(Document.source == source, Document.source_document_id == source_document_id)
    ).one_or_none()


def commit_indexed(
    session: Session,
    claim: Claim,
    document: Document | None,
    document_id: str,
    patient_id: str,
    batch_id: str,
    source: str,
    also: Callable[[Session], object] | None = None,
) -> bool:
    """Record the document, mark the item indexed and queue the patient's notification, atomically;
    `also` writes what must commit with them (the deposit's audit entry).

    Returns False (and writes nothing) when another attempt has taken the item over.
    """
    item = _still_mine(session, claim)
    if item is None:
        session.rollback()
        return False
    if document is not None:
        session.add(document)
    if also is not None:
        also(session)
    item.state, item.reason, item.message = "indexed", None, None
    item.title_sealed = None  # the document keeps it, under the record key
    item.finished_at = _utcnow()
    item.document_id = document_id
    item.pending_object_key = None
    insert_ignore(
        session,
        Outbox,
        {"id": new_id(), "patient_id": patient_id, "kind": "documents_added", "ref_id": batch_id, "source": source},
    )
    session.commit()
    return True


def commit_rejected(
    session: Session, claim: Claim | None, item_id: str, reason: str, message: str, quarantine: tuple[str, dt.date] | None
) -> bool:
    item = _still_mine(session, claim) if claim else session.get(BatchItem, item_id)
    if item is None or item.state in FINAL_STATES:
        session.rollback()
        return False
    item.state, item.reason, item.message = "rejected", reason, message
    item.title_sealed = None  # nothing reads a final item's title
    item.finished_at = _utcnow()
    item.pending_object_key = None
    if quarantine:
        item.quarantine_key, item.quarantine_until = quarantine.object_key, quarantine.until
        item.quarantine_master_key_id, item.quarantine_wrapped_key = quarantine.wrapped.key_id, quarantine.wrapped.blob
    session.commit()
    return True


def requeue_for_retry(session: Session, item_id: str) -> None:
    """A transient failure: the attempt ends cleanly and the item waits for its retry."""
    session.execute(update(BatchItem).where(BatchItem.id == item_id, BatchItem.state == "processing").values(state="queued"))
    session.commit()


def relocate_inbox(session: Session, item_id: str, key: str, member: str | None) -> None:
    """Point an unfinished item at where its bytes now wait in the inbox."""
    values = {"inbox_key": key, "inbox_member": member}
    session.execute(update(BatchItem).where(BatchItem.id == item_id, BatchItem.state.not_in(FINAL_STATES)).values(**values))
    session.commit()


def batch_items(session: Session, batch_id: str) -> Sequence[BatchItem]:
    return session.scalars(
        select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.row_number.nulls_last(), BatchItem.file)
    ).all()


def batch_counts(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(select(BatchItem.state, func.count()).where(BatchItem.batch_id == batch_id).group_by(BatchItem.state))
    return {state: count for state, count in rows}


def documents_by_id(session: Session, document_ids: Sequence[str]) -> dict[str, Document]:
    docs = session.scalars(select(Document).where(Document.id.in_(document_ids))).all() if document_ids else []
    return {doc.id: doc for doc in docs}


def batch_source(session: Session, batch_id: str) -> str:
    return session.scalars(select(Batch.source).where(Batch.id == batch_id)).one()
