"""Intake of a hospital or lab batch: check the manifest, stream bytes to the inbox, record, enqueue.

Order matters for crash safety: the batch and its items are committed first (state `queued`),
then each document is streamed to `inbox/<item id>`, then messages are sent. Re-ingesting the
same batch (same source, same manifest) finds the recorded batch and resumes it: it uploads
what is missing and re-sends unfinished items; it never creates a second row or object.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.index import repo
from pipeline.index.models import Batch, BatchItem, new_id
from pipeline.ingest.archive import ArchiveLimits
from pipeline.ingest.batch import BatchReader, LimitedReader, open_batch
from pipeline.ingest.manifest import Manifest, ManifestError, parse_manifest
from pipeline.reasons import REASONS, Transient
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
SOURCE = re.compile(r"^(hospital|lab|insurer):([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")
DOCUMENT_SOURCES = ("hospital", "lab")


class SourceError(ValueError):
    """The --source value is not KIND:ID with a known kind."""


def parse_source(value: str) -> tuple[str, str]:
    match = SOURCE.match(value or "")
    if not match:
        raise SourceError("--source must be hospital:ID, lab:ID or insurer:ID (ID: letters, digits, . _ -)")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class IntakeResult:
    batch_id: str
    total: int
    sent: list[str]  # item ids sent to the workers
    rejected_at_intake: int
    resumed: bool


def _manifest_digest(rt: Runtime, source: str, data: bytes) -> str:
    return hmac.new(rt.hmac_secret, source.encode() + b"\0" + data, "sha256").hexdigest()


def _plan_items(batch_id: str, manifest: Manifest, present: list[str], reader: BatchReader) -> list[BatchItem]:
    items: list[BatchItem] = []
    present_set = set(present)
    for row in manifest.rows:
        item_id = new_id()
        found = row.file in present_set
        # An uploaded part already in the inbox becomes the item's inbox object: no second copy.
        inbox_key = (reader.stored_key(row.file) or f"inbox/{item_id}") if found else None
        items.append(
            BatchItem(
                id=item_id,
                batch_id=batch_id,
                slot=f"row:{row.row_number}",
                file=row.file,
                row_number=row.row_number,
                source_document_id=row.fields.get("source_document_id"),
                patient_ins=row.fields.get("patient_ins"),
                title=row.fields.get("title"),
                document_type=row.fields.get("document_type") or None,
                service_date=row.fields.get("service_date"),
                author_id=row.fields.get("author_id"),
                author_profession=row.fields.get("author_profession"),
                state="queued" if found else "rejected",
                reason=None if found else "missing_file",
                message=None if found else REASONS["missing_file"],
                inbox_key=inbox_key,
                document_id=new_id(),
                attempts=0,
                crashes=0,
            )
        )
    for problem in manifest.problems:
        items.append(
            _intake_rejection(batch_id, f"row:{problem.row_number}", problem.file, problem.row_number, problem.reason, problem.detail)
        )
    for name in sorted(present_set - manifest.listed_files):
        items.append(_intake_rejection(batch_id, f"file:{name}", name, None, "unlisted_file", ""))
    return items


def _intake_rejection(batch_id: str, slot: str, file: str, row: int | None, reason: str, detail: str) -> BatchItem:
    message = f"{REASONS[reason]} {detail}".strip()
    return BatchItem(
        id=new_id(),
        batch_id=batch_id,
        slot=slot,
        file=file,
        row_number=row,
        state="rejected",
        reason=reason,
        message=message,
        document_id=new_id(),
        attempts=0,
        crashes=0,
    )


def _record_batch(rt: Runtime, source: str, digest: str, manifest: Manifest, present: list[str], reader: BatchReader) -> tuple[str, bool]:
    """Insert the batch and its items in one transaction, or find the batch recorded earlier."""
    with rt.sessions() as session:
        existing = session.scalars(select(Batch.id).where(Batch.source == source, Batch.manifest_digest == digest)).first()
        if existing:
            return existing, True
        batch_id = new_id()
        items = _plan_items(batch_id, manifest, present, reader)
        session.add(Batch(id=batch_id, source=source, manifest_digest=digest, total=len(items)))
        session.flush()
        session.add_all(items)
        try:
            session.commit()
        except IntegrityError:  # the same batch recorded concurrently
            session.rollback()
            found = session.scalars(select(Batch.id).where(Batch.source == source, Batch.manifest_digest == digest)).one()
            return found, True
        return batch_id, False


def _retrying(rt: Runtime, action: str) -> Retrying:
    """Intake-side retries of a transient failure (storage, broker): exponential backoff, bounded."""
    return Retrying(
        retry=retry_if_exception_type(Transient),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_after_attempt(rt.settings.intake_retries),
        before_sleep=lambda state: log.warning("%s failed during intake (attempt %d), retrying", action, state.attempt_number),
        reraise=True,
    )


def _upload(rt: Runtime, reader: BatchReader, item: BatchItem) -> bool:
    """Stream one document into the inbox; an oversize one is rejected without being stored whole.

    A storage outage is retried with backoff; if it outlasts the retries, Transient propagates
    and re-running the same ingest resumes the batch.
    """
    try:
        with reader.open(item.file) as source:
            rt.store.put(item.inbox_key or "", LimitedReader(source, rt.settings.max_file_bytes))  # type: ignore[arg-type]
        return True
    except LimitedReader.TooLarge:
        rt.store.delete(item.inbox_key or "")
        with rt.sessions() as session:
            repo.commit_rejected(session, None, item.id, "file_too_large", REASONS["file_too_large"], None)
        return False


def receive_batch(rt: Runtime, batch: Path | BatchReader, source: str, send: Callable[[str], None]) -> IntakeResult:
    """Record a dropped batch, put each document in the inbox and `send` its item id right after.

    `batch` is a folder or zip path, or a reader over an upload (pipeline.ingest.uploads). The
    batch's rows are committed before the first upload, so a message never points at nothing.
    Raises ManifestError if the batch is unusable as a whole.
    """
    kind, _ = parse_source(source)
    if kind not in DOCUMENT_SOURCES:
        raise SourceError("document batches come from hospital:ID or lab:ID sources")
    reader = open_batch(batch, ArchiveLimits.from_settings(rt.settings)) if isinstance(batch, Path) else batch
    data = reader.manifest_bytes()
    manifest = parse_manifest(data)
    present = reader.document_names()
    batch_id, resumed = _record_batch(rt, source, _manifest_digest(rt, source, data), manifest, present, reader)

    with rt.sessions() as session:
        items = list(repo.batch_items(session, batch_id))
    sent: list[str] = []
    for item in items:
        if item.state in repo.FINAL_STATES:
            continue
        in_place = item.inbox_key is not None and item.inbox_key == reader.stored_key(item.file)
        needs_upload = not in_place and (not resumed or not rt.store.exists(item.inbox_key or ""))
        if needs_upload and not _retrying(rt, "upload")(_upload, rt, reader, item):
            continue
        _retrying(rt, "send")(send, item.id)
        sent.append(item.id)
    rejected = sum(1 for item in items if item.state == "rejected")
    return IntakeResult(batch_id, len(items), sent, rejected, resumed)


__all__ = ["IntakeResult", "ManifestError", "SourceError", "parse_source", "receive_batch"]
