"""Processing one batch item: validate -> classify -> seal -> index -> notify.

This is the service layer the actor wraps. Every stage is a plain function; this module only
orders them, keeps the item's state honest and cleans up after itself:

- the inbox copy (plaintext) is removed once the item is final, even if the previous attempt
  committed and died before removing it;
- each attempt writes its object under its own key, recorded before the upload; the next
  attempt removes a predecessor's object that never got committed, so a killed worker leaves
  no orphan and two concurrent attempts never overwrite each other's object;
- the document row, the item's final state and the notification are one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.access.audit import AuditEvent, append
from pipeline.core import metrics
from pipeline.core.clock import paris_date
from pipeline.core.inbox import LimitedReader
from pipeline.core.keys import new_key
from pipeline.core.logs import bound
from pipeline.core.metrics import Stage, timed
from pipeline.core.outage import Interrupted, failure_code, outage_of
from pipeline.core.reasons import REASONS, Rejected, Transient
from pipeline.core.sealing import new_data_key, seal, seal_context
from pipeline.core.storage import ObjectNotFound
from pipeline.documents import versions
from pipeline.documents.classify import classify, needs_content
from pipeline.documents.contributed import contributed_classification
from pipeline.documents.sandbox import anonymous_file, freeze
from pipeline.documents.titles import item_title, seal_title
from pipeline.documents.validate import check_content, check_metadata
from pipeline.index import repo
from pipeline.index.db import transact
from pipeline.index.models import BatchItem, Document
from pipeline.index.states import AttemptOutcome, AuditOutcome, RecordStatus
from pipeline.runtime import Runtime
from pipeline.sharing.metadata import store_sharing

log = logging.getLogger(__name__)
SPOOL_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Spooled:
    file: BinaryIO  # a frozen anonymous file: in memory, never on disk, read-only
    size: int
    content_hmac: str


@contextmanager
def spool(rt: Runtime, item: BatchItem) -> Iterator[Spooled]:
    """Copy an item's inbox bytes into memory (size-limited, keyed-hashed), gone after use.

    An anonymous memory file rather than a temp file: no plaintext ever reaches the disk, and the
    kernel frees it with the process, even one killed mid-document. The sandbox child gets its
    descriptor. It holds up to DMP_MAX_FILE_BYTES per worker thread (see the README).
    """
    hasher = rt.hasher()
    with anonymous_file() as out, rt.inbox.open(item.inbox_key or "", item.inbox_member) as source:
        limited = LimitedReader(source, rt.settings.max_file_bytes)
        try:
            while chunk := limited.read(SPOOL_CHUNK):
                hasher.update(chunk)
                out.write(chunk)
        except LimitedReader.TooLarge:
            raise Rejected("file_too_large") from None
        freeze(out)
        yield Spooled(out, limited.count, hasher.hexdigest())


def _fields(item: BatchItem) -> dict[str, str | None]:
    return {
        "patient_ins": item.patient_ins,
        "source_document_id": item.source_document_id,
        "service_date": item.service_date,
        "author_id": item.author_id,
        "author_profession": item.author_profession,
        "announcement_date": item.announcement_date,
        "version_action": item.version_action,
    }


def _source(rt: Runtime, item: BatchItem) -> str:
    with rt.sessions() as session:
        return repo.batch_source(session, item.batch_id)


def process_item(rt: Runtime, item_id: str, today: dt.date | None = None, resuming: int | None = None) -> AttemptOutcome:
    """Run one attempt on an item; returns its state afterwards. Idempotent: safe to re-run.

    An outage met after the claim releases it when the index answers and raises Interrupted
    (pipeline/core/outage.py): the caller waits and tries again with `resuming` set to its attempt.
    """
    with rt.sessions() as session:
        claim = repo.claim_item(session, item_id, dt.timedelta(seconds=rt.settings.claim_lease_seconds), resuming)
    if claim is repo.Refusal.FINAL:
        forget_inbox(rt, item_id)
        return AttemptOutcome.FINAL
    if claim is repo.Refusal.BUSY:
        log.info("item %s is being processed by a live attempt: this message was a duplicate", item_id)
        return AttemptOutcome.BUSY
    try:
        with bound(batch_id=claim.item.batch_id):
            state = _attempt(rt, claim, today or paris_date())
            log.info("item %s: %s", item_id, state)
            return state
    except Exception as failure:
        service = outage_of(failure)
        # An unexpected error counts as a crash (DMP_MAX_ATTEMPTS); a race or an outage does not.
        _release(rt, claim, crashed=service is None and not isinstance(failure, Transient))
        if service is None:
            raise
        raise Interrupted(service, failure_code(failure), claim.attempt) from None


def _release(rt: Runtime, claim: repo.Claim, crashed: bool) -> None:
    """Put a failed attempt's item back to `queued` if the index answers; if not, the claim stays
    with this message, whose next try takes it back (`resuming`), or lapses for the recovery sweep."""
    try:
        with rt.sessions() as session:
            repo.release_claim(session, claim.item.id, claim.attempt, crashed)
    except Exception as failure:
        if outage_of(failure) is None:
            raise


def _attempt(rt: Runtime, claim: repo.Claim, today: dt.date) -> AttemptOutcome:
    item = claim.item
    if claim.previous_pending_key and claim.previous_pending_key != item.pending_object_key:
        rt.store.delete(claim.previous_pending_key)
    if item.crashes >= rt.settings.max_attempts:
        log.warning("item %s set aside after %d crashed attempts", item.id, item.crashes)
        return _reject(rt, item, claim, "processing_crashed", REASONS["processing_crashed"])
    try:
        return _accept(rt, claim, today)
    except Rejected as rejection:
        log.info("item %s rejected: %s", item.id, rejection.reason)
        return _reject(rt, item, claim, rejection.reason, rejection.message)
    except ObjectNotFound:
        # The intake died before uploading this file: re-ingesting the batch uploads and re-sends it.
        log.warning("item %s has no inbox object; re-ingest the batch to resume it", item.id)
        with rt.sessions() as session:
            repo.wait_for_intake(session, item.id, claim.attempt)
        return AttemptOutcome.QUEUED


def _accept(rt: Runtime, claim: repo.Claim, today: dt.date) -> AttemptOutcome:
    item = claim.item
    meta = check_metadata(_fields(item), today)
    source = _source(rt, item)
    with spool(rt, item) as spooled:
        if spooled.size == 0:
            raise Rejected("empty_file")
        with timed(Stage.VALIDATE):
            content = check_content(spooled.file, item.file, meta.ins, rt.settings, want_text=needs_content(item.document_type))
        manifest_title = item_title(rt, item)
        title = manifest_title or content.title
        with timed(Stage.CLASSIFY):
            classification = classify(
                content.cda_code, item.document_type, title, item.file, content.text, cda_code_system=content.cda_code_system
            )
        classification = contributed_classification(source, item.document_type) or classification
        with rt.sessions() as session:
            patient = repo.ensure_patient(session, meta.ins)
            existing = repo.find_document(session, source, meta.source_document_id)
            session.commit()
        if patient.status != RecordStatus.OPEN:
            raise Rejected("record_closed")
        # A new version when the source says so (pipeline/documents/versions.py); changed bytes otherwise are rejected.
        replaced = versions.replacement(existing, spooled.content_hmac, item.version_action, patient.id)
        if existing is not None and replaced is None:
            # Same document re-sent (another batch, or a retry after commit): index it once.
            transact(
                rt.sessions,
                lambda session: repo.mark_indexed(
                    session, claim, document=None, document_id=existing.id, patient_id=patient.id, batch_id=item.batch_id, source=source
                ),
            )
            forget_inbox(rt, item.id, item)
            metrics.documents_indexed.labels(metrics.source_kind(source)).inc()
            return AttemptOutcome.INDEXED
        object_key = item.pending_object_key or ""
        record = rt.record_keys.for_patient(patient.id)
        key, wrapped_key = new_data_key(record.key, item.document_id)
        context = seal_context(item.document_id, patient.id)
        spooled.file.seek(0)
        with timed(Stage.SEAL):
            # No second keyed hash: the spool is frozen (no write, grow or shrink), so the bytes
            # sealed are the bytes spool() hashed.
            sealed = seal(rt.store, key, f"record:{record.id}", object_key, context, spooled.file, rt.settings.segment_bytes, None)
    document = Document(
        id=item.document_id,
        patient_id=patient.id,
        source=source,
        source_document_id=meta.source_document_id,
        batch_item_id=item.id,
        title_sealed=seal_title(record.key, manifest_title, item.document_id, patient.id),
        class_code=classification.class_code,
        type_code=classification.type_code,
        classified_by=classification.rule,
        confidence=classification.confidence,
        needs_review=classification.needs_review,
        service_date=meta.service_date,
        hidden_from_patient_until=meta.hold_until,
        author_id=item.author_id,
        author_profession=item.author_profession,
        version=replaced.version if replaced else 1,
        supersedes_id=replaced.previous_id if replaced else None,
        mime_type=content.mime_type,
        size=sealed.size,
        content_hmac=spooled.content_hmac,
        object_key=sealed.object_key,
        record_key_id=record.id,
        wrapped_key=wrapped_key,
    )
    deposit = deposit_event(document)

    def index(session: Session) -> bool:
        """The document, the item indexed, the notification and the deposit's audit entry: all or nothing."""
        indexed = repo.mark_indexed(
            session, claim, document=document, document_id=document.id, patient_id=patient.id, batch_id=item.batch_id, source=source
        )
        if indexed:
            if replaced is not None:
                versions.link_replacement(session, replaced, document.id)
            store_sharing(session, document.id, item.sharing, content.header)
            append(session, rt.audit_key, deposit)
        return indexed

    try:
        # No retry here: a conflict is most likely the same source document indexed by another item, which
        # the message's own retry finds and links (below).
        with timed(Stage.INDEX):
            committed = transact(rt.sessions, index)
    except (IntegrityError, versions.VersionRace):
        # Another item indexed (or replaced) the same source document meanwhile; the retry finds and links it.
        rt.store.delete(object_key)
        raise Transient(f"document_race item={item.id}") from None
    if not committed:
        rt.store.delete(object_key)  # another attempt owns the item now
        return AttemptOutcome.SUPERSEDED
    forget_inbox(rt, item.id, item)
    metrics.documents_indexed.labels(metrics.source_kind(source)).inc()
    return AttemptOutcome.INDEXED


def deposit_event(document: Document) -> AuditEvent:
    """The access-log entry of a deposit: the source that sent the document, its author's profession."""
    return AuditEvent(
        chain=document.patient_id,
        actor_id=document.source,
        actor_kind="source",
        profession=document.author_profession,
        action="deposit",
        document_id=document.id,
        outcome=AuditOutcome.ALLOWED,
        reason="indexed",
    )


def _reject(rt: Runtime, item: BatchItem, claim: repo.Claim | None, reason: str, message: str) -> AttemptOutcome:
    quarantine = _quarantine(rt, item) if rt.settings.quarantine_days > 0 else None
    with rt.sessions() as session:
        committed = repo.commit_rejected(session, claim, item.id, reason, message, quarantine)
    if item.pending_object_key:
        rt.store.delete(item.pending_object_key)
    if not committed:
        if quarantine:
            rt.store.delete(quarantine.object_key)
        return AttemptOutcome.SUPERSEDED
    forget_inbox(rt, item.id, item)
    metrics.documents_rejected.labels(metrics.source_kind(_source(rt, item)), reason).inc()
    return AttemptOutcome.REJECTED


def _quarantine(rt: Runtime, item: BatchItem) -> repo.Quarantine | None:
    """Keep a rejected document's bytes, encrypted, for the sender's support to inspect.

    Its data key is wrapped directly by a master key: the patient may be unknown or invalid.
    """
    if not item.inbox_key:
        return None
    object_key = f"quarantine/{item.id}"
    context = f"quarantine:{item.id}"
    key = new_key()
    try:
        with rt.inbox.open(item.inbox_key, item.inbox_member) as raw:
            seal(rt.store, key, "master", object_key, context, raw, rt.settings.segment_bytes, None)  # no index row wants its hash
    except (ObjectNotFound, Rejected):  # gone, or an unreadable zip entry: nothing to keep
        return None
    until = paris_date() + dt.timedelta(days=rt.settings.quarantine_days)
    return repo.Quarantine(object_key, until, rt.keys.wrap(key, context))


def forget_inbox(rt: Runtime, item_id: str, item: BatchItem | None = None) -> None:
    """Remove the plaintext inbox bytes of a final item (idempotent); a zip the batch shares goes
    with its last waiting item. Then the item's lease is cleared: a final item that keeps one past
    its end is one whose worker died before this, and the recovery sweep finishes the job."""
    if item is None:
        with rt.sessions() as session:
            item = session.get(BatchItem, item_id)
    if item is None:
        return
    if item.inbox_key:
        shared = False
        if item.inbox_member is not None:
            with rt.sessions() as session:
                shared = repo.still_needed(session, item.batch_id, item.inbox_key)
        if not shared:
            rt.store.delete(item.inbox_key)
    with rt.sessions() as session:
        repo.inbox_forgotten(session, item_id)


def send_waiting_items(rt: Runtime, batch_id: str, send: Callable[[str], object]) -> int:
    """Send every unfinished item of a batch to the workers, then record that the batch was sent;
    returns how many. Sending one twice is harmless (an item is claimed once), so a retried or
    repeated call may resend them all."""
    with rt.sessions() as session:
        unfinished = select(BatchItem.id).where(BatchItem.batch_id == batch_id, BatchItem.state.not_in(repo.FINAL_STATES))
        waiting = list(session.scalars(unfinished))
    for item_id in waiting:
        send(item_id)
    with rt.sessions() as session:
        repo.mark_sent(session, batch_id)
    return len(waiting)


def mark_retries_exhausted(rt: Runtime, item_id: str) -> None:
    """Called when a failure that is neither bad input nor an outage (those wait: pipeline/core/outage.py) outlived
    every retry: the item ends rejected; running the same intake again re-opens it."""
    with rt.sessions() as session:
        item = session.get(BatchItem, item_id)
    if item is not None and item.state not in repo.FINAL_STATES:
        _reject(rt, item, None, "retries_exhausted", REASONS["retries_exhausted"])
