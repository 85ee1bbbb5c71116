"""Processing batch items: validate -> classify -> seal -> index -> notify.

This is the service layer the actors wrap. Every stage is a plain function here; batching.py runs
them over the items of one message (a micro-batch, with its SQL batched), keeps the items' states
honest and cleans up after itself:

- the inbox copy (plaintext) is removed once the item is final, even if the previous attempt
  committed and died before removing it;
- each attempt writes its object under its own key, recorded before the upload; the next
  attempt removes a predecessor's object that never got committed, so a killed worker leaves
  no orphan and two concurrent attempts never overwrite each other's object;
- the document rows, the items' final states, the notifications and the deposits' audit entries
  of one message are one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select

from pipeline.access.audit import AuditEvent
from pipeline.core import metrics
from pipeline.core.clock import paris_date
from pipeline.core.inbox import LimitedReader
from pipeline.core.keys import new_key
from pipeline.core.metrics import Stage, observe_each, timed
from pipeline.core.outage import Interrupted
from pipeline.core.reasons import REASONS, Rejected
from pipeline.core.sealedfields import quarantine_key_context
from pipeline.core.sealing import new_data_key, seal, seal_context
from pipeline.core.storage import ObjectNotFound
from pipeline.documents import versions
from pipeline.documents.childwire import anonymous_file, freeze
from pipeline.documents.classify import Classification, classify, needs_content
from pipeline.documents.contributed import contributed_classification
from pipeline.documents.inspect import Content
from pipeline.documents.titles import item_title, seal_title
from pipeline.documents.validate import ContentCheck, Metadata, check_contents
from pipeline.index import repo
from pipeline.index.models import BatchItem, Document
from pipeline.index.recordkeys import OpenRecordKey
from pipeline.index.states import AttemptOutcome, AuditOutcome
from pipeline.runtime import Runtime

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


def item_fields(item: BatchItem) -> dict[str, str | None]:
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
    A micro-batch of one (pipeline/documents/batching.py): the same stages, the same guarantees.
    """
    from pipeline.documents.batching import process_items  # it builds on this module's stages

    try:
        return process_items(rt, [item_id], today, None if resuming is None else {item_id: resuming})[item_id]
    except Interrupted as stop:
        attempts = stop.attempt if isinstance(stop.attempt, dict) else {item_id: stop.attempt}
        raise Interrupted(stop.service, stop.code, attempts[item_id]) from None


@dataclass(frozen=True)
class Prepared:
    """An item's document validated and classified, before it is sealed."""

    meta: Metadata
    content: Content
    manifest_title: str | None
    classification: Classification


def validate_all(rt: Runtime, documents: Sequence[tuple[BatchItem, Metadata, Spooled]]) -> list[Content | Rejected]:
    """The validate stage on a message's spooled documents, in one exchange with the sandbox's child
    (`check_contents`): each document keeps its own limits and gets its own verdict, its Content or
    its rejection."""
    if not documents:
        return []
    checks = [ContentCheck(spooled.file, item.file, meta.ins, needs_content(item.document_type)) for item, meta, spooled in documents]
    started = time.perf_counter()
    verdicts = check_contents(checks, rt.settings)
    observe_each(Stage.VALIDATE, (time.perf_counter() - started) / len(documents), len(documents))
    return verdicts


def classify_content(rt: Runtime, item: BatchItem, source: str, meta: Metadata, content: Content) -> Prepared:
    """The classify stage on a validated document. A patient's own document is class 90 of its declared
    type whatever its content says (pipeline/documents/contributed.py)."""
    manifest_title = item_title(rt, item)
    title = manifest_title or content.title
    with timed(Stage.CLASSIFY):
        classification = classify(
            content.cda_code, item.document_type, title, item.file, content.text, cda_code_system=content.cda_code_system
        )
    classification = contributed_classification(source, item.document_type) or classification
    return Prepared(meta, content, manifest_title, classification)


def seal_document(
    rt: Runtime,
    item: BatchItem,
    source: str,
    patient_id: str,
    record: OpenRecordKey,
    prepared: Prepared,
    spooled: Spooled,
    replaced: versions.Replacement | None = None,
) -> Document:
    """The seal stage: encrypt the spooled bytes under a fresh data key into the attempt's object
    (one PUT) and return the document row to index (version n+1 of `replaced`, when it replaces one)."""
    object_key = item.pending_object_key or ""
    key, wrapped_key = new_data_key(record.key, item.document_id)
    context = seal_context(item.document_id, patient_id)
    spooled.file.seek(0)
    with timed(Stage.SEAL):
        # No second keyed hash: the spool is frozen (no write, grow or shrink), so the bytes
        # sealed are the bytes spool() hashed.
        sealed = seal(rt.store, key, f"record:{record.id}", object_key, context, spooled.file, rt.settings.segment_bytes, None)
    meta, classification = prepared.meta, prepared.classification
    return Document(
        id=item.document_id,
        patient_id=patient_id,
        source=source,
        source_document_id=meta.source_document_id,
        batch_item_id=item.id,
        title_sealed=seal_title(record.key, prepared.manifest_title, item.document_id, patient_id),
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
        mime_type=prepared.content.mime_type,
        size=sealed.size,
        content_hmac=spooled.content_hmac,
        object_key=sealed.object_key,
        record_key_id=record.id,
        wrapped_key=wrapped_key,
    )


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
    kept = quarantine(rt, item) if rt.settings.quarantine_days > 0 else None
    with rt.sessions() as session:
        committed = repo.commit_rejected(session, claim, item.id, reason, message, kept)
    if item.pending_object_key:
        rt.store.delete(item.pending_object_key)
    if not committed:
        if kept:
            rt.store.delete(kept.object_key)
        return AttemptOutcome.SUPERSEDED
    forget_inbox(rt, item.id, item)
    metrics.documents_rejected.labels(metrics.source_kind(_source(rt, item)), reason).inc()
    return AttemptOutcome.REJECTED


def quarantine(rt: Runtime, item: BatchItem) -> repo.Quarantine | None:
    """Keep a rejected document's bytes, encrypted, for the sender's support to inspect.

    Its data key is wrapped directly by a master key: the patient may be unknown or invalid.
    """
    if not item.inbox_key:
        return None
    object_key = f"quarantine/{item.id}"
    context = quarantine_key_context(item.id)
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


def mark_retries_exhausted(rt: Runtime, item_id: str) -> bool:
    """Called when a failure that is neither bad input nor an outage (those wait: pipeline/core/outage.py) outlived
    every retry: the item ends rejected (True; False if it was final already); running the same intake again
    re-opens it."""
    with rt.sessions() as session:
        item = session.get(BatchItem, item_id)
    if item is None or item.state in repo.FINAL_STATES:
        return False
    return _reject(rt, item, None, "retries_exhausted", REASONS["retries_exhausted"]) == AttemptOutcome.REJECTED
