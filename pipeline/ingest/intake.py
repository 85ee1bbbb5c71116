"""Intake of a hospital or lab batch: check the manifest, stream bytes to the inbox, record, enqueue.

Order matters for crash safety: the batch and its items are committed first (state `queued`),
then each document is streamed to `inbox/<item id>`, then messages are sent. Re-ingesting the
same batch (same source, same manifest) finds the recorded batch and resumes it: it uploads
what is missing and re-sends unfinished items; it never creates a second row or object.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from pipeline.core import metrics
from pipeline.core.inbox import ZIP_ENTRY_ERRORS, InboxLocation, LimitedReader
from pipeline.core.keys import new_key
from pipeline.core.outage import failure_code, outage_of
from pipeline.core.reasons import REASONS
from pipeline.core.sealedfields import Sealer, batch_key_context, item_title_context
from pipeline.documents.contributed import is_patient_source
from pipeline.index import repo
from pipeline.index.base import new_id, table_of
from pipeline.index.models import Batch, BatchItem
from pipeline.index.repo import RowValues
from pipeline.index.states import ItemState
from pipeline.ingest.archive import ArchiveLimits
from pipeline.ingest.batch import BatchReader, open_batch
from pipeline.ingest.manifest import Manifest, ManifestError, parse_manifest
from pipeline.ingest.packs import Packer
from pipeline.runtime import Runtime
from pipeline.sharing.metadata import sharing_json
from pipeline.sources import SourceError, parse_source

log = logging.getLogger(__name__)
# Told (done, total) as work advances: the items of a batch taken in, the lines of a feed.
OnProgress = Callable[[int, int], None]
DOCUMENT_SOURCES = ("hospital", "lab")
# Item columns an intake row may set; every row of one bulk insert carries all of them.
ITEM_FIELDS = (
    "source_document_id", "patient_ins", "title_sealed", "document_type", "service_date", "author_id", "author_profession",
    "announcement_date", "version_action", "inbox_key", "inbox_member", "sharing",
)  # fmt: skip


class IntakeInterrupted(Exception):
    """A service stayed unavailable through the intake's retries. Nothing is lost: what was taken in
    stays, and running the same intake again resumes from there. The text is codes and counts only."""

    def __init__(self, code: str, batch_id: str | None, taken: int, total: int | None) -> None:
        done = f"batch {batch_id}: {taken} of its {total} items handed to the workers" if batch_id else "nothing recorded"
        super().__init__(f"{code}; {done}")
        self.code, self.batch_id, self.taken, self.total = code, batch_id, taken, total


@dataclass(frozen=True)
class IntakeResult:
    batch_id: str
    total: int
    sent: list[str]  # item ids sent to the workers
    rejected_at_intake: int
    resumed: bool


def _manifest_digest(rt: Runtime, source: str, data: bytes) -> str:
    return hmac.new(rt.hmac_secret, source.encode() + b"\0" + data, "sha256").hexdigest()


def _plan_items(batch_id: str, manifest: Manifest, present: list[str], reader: BatchReader, titles: Sealer) -> list[RowValues]:
    """The batch's item rows: one per manifest row (rejected `missing_file` if absent), one per
    rejected manifest row and one per file the manifest does not list. Titles are sealed with `titles` (the batch key)."""
    items: list[RowValues] = []
    present_set = set(present)
    for row in manifest.rows:
        item_id = new_id()
        found = row.file in present_set
        # An uploaded part or zip already in the inbox holds the item's bytes: no second copy.
        stored = reader.stored(row.file) if found else None
        fields = row.fields
        items.append(
            _item_row(batch_id, f"row:{row.row_number}", row.file, row.row_number, None if found else "missing_file", "", item_id)
            | {
                "source_document_id": fields.get("source_document_id"),
                "patient_ins": fields.get("patient_ins"),
                "title_sealed": titles.seal(fields.get("title"), item_title_context(item_id)) if found else None,
                "document_type": fields.get("document_type") or None,
                "service_date": fields.get("service_date"),
                "author_id": fields.get("author_id"),
                "author_profession": fields.get("author_profession"),
                "announcement_date": fields.get("announcement_date") or None,
                "version_action": fields.get("version_action") or None,
                "inbox_key": (stored.key if stored else f"inbox/{item_id}") if found else None,
                "inbox_member": stored.member if stored else None,
                "sharing": sharing_json(fields),
            }
        )
    for problem in manifest.problems:
        items.append(_item_row(batch_id, f"row:{problem.row_number}", problem.file, problem.row_number, problem.reason, problem.detail))
    for name in sorted(present_set - manifest.listed_files):
        items.append(_item_row(batch_id, f"file:{name}", name, None, "unlisted_file", ""))
    return items


def _item_row(
    batch_id: str, slot: str, file: str, row: int | None, reason: str | None, detail: str, item_id: str | None = None
) -> RowValues:
    """An item row with every column the bulk insert sets: queued, or rejected at intake for `reason`."""
    return dict.fromkeys(ITEM_FIELDS) | {
        "id": item_id or new_id(),
        "batch_id": batch_id,
        "slot": _storable(slot, SLOT_WIDTH),
        "file": _storable(file, SLOT_WIDTH),
        "row_number": row,
        "state": ItemState.QUEUED if reason is None else ItemState.REJECTED,
        "reason": reason,
        "message": None if reason is None else f"{REASONS[reason]} {detail}".strip(),
        "document_id": new_id(),
        "attempts": 0,
        "crashes": 0,
    }


# batch_items.slot and .file. A queued item's name always fits (its manifest row was checked,
# pipeline.ingest.manifest.FIELD_WIDTHS); only the names of rejected ones may need shortening.
SLOT_WIDTH = 512


def _storable(name: str, width: int) -> str:
    """`name` as the index can keep and show it: without NUL nor unencodable characters (a file name
    that is not UTF-8), and, past `width`, cut and told apart from its likes by a digest of the whole."""
    shown = name.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(shown) <= width:
        return shown
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{shown[: width - 18]}…#{digest}"


def _record_batch(rt: Runtime, source: str, digest: str, manifest: Manifest, present: list[str], reader: BatchReader) -> tuple[str, bool]:
    """Insert the batch and its items in one transaction, or find the batch recorded earlier.

    The items go in as one executemany of plain rows: ORM objects would fetch each row's server
    defaults back through one huge INSERT … RETURNING (most of an upload's time, measured)."""
    with rt.sessions() as session:
        existing = session.scalars(select(Batch.id).where(Batch.source == source, Batch.manifest_digest == digest)).first()
        if existing:
            return existing, True
        batch_id = new_id()
        key = new_key()
        wrapped = rt.keys.wrap(key, batch_key_context(batch_id))
        items = _plan_items(batch_id, manifest, present, reader, Sealer(key))
        try:
            session.add(
                Batch(
                    id=batch_id,
                    source=source,
                    manifest_digest=digest,
                    total=len(items),
                    master_key_id=wrapped.key_id,
                    wrapped_key=wrapped.blob,
                )
            )
            session.flush()
            if items:
                session.execute(insert(table_of(BatchItem)), items)  # Core: no ORM bookkeeping per row
            session.commit()
        except IntegrityError:  # the same batch recorded concurrently (its row waits on ours, then clashes)
            session.rollback()
            found = session.scalars(select(Batch.id).where(Batch.source == source, Batch.manifest_digest == digest)).one()
            return found, True
    _count_received(source, items)
    return batch_id, False


def _count_received(source: str, items: list[dict[str, Any]]) -> None:
    kind = metrics.source_kind(source)
    metrics.documents_received.labels(kind).inc(len(items))
    for item in items:
        if item["reason"] is not None:
            metrics.documents_rejected.labels(kind, item["reason"]).inc()


def _retrying(rt: Runtime, action: str) -> Retrying:
    """Intake-side retries of an outage (database, storage, broker): exponential backoff, bounded
    (DMP_INTAKE_RETRIES attempts); the last failure is re-raised."""
    return Retrying(
        retry=retry_if_exception(lambda failure: outage_of(failure) is not None),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_after_attempt(rt.settings.intake_retries),
        before_sleep=lambda state: log.warning(
            "%s failed during intake (%s, attempt %d): retrying", action, _failure_of(state), state.attempt_number
        ),
        reraise=True,
    )


def _failure_of(state: RetryCallState) -> str:
    failure = state.outcome.exception() if state.outcome is not None else None
    return failure_code(failure) if failure is not None else "none"


def _upload(rt: Runtime, reader: BatchReader, item: BatchItem, key: str) -> bool:
    """Stream one document into the inbox at `key`; an oversize one, or a zip entry that cannot be
    read back, is rejected without being stored whole.

    A storage outage is retried with backoff (`_retrying`); if it outlasts the retries, the intake
    stops (IntakeInterrupted) and re-running the same ingest resumes the batch.
    """
    try:
        with reader.open(item.file) as source:
            rt.store.put(key, LimitedReader(source, rt.settings.max_file_bytes))
        return True
    except (LimitedReader.TooLarge, *ZIP_ENTRY_ERRORS) as exc:
        rt.store.delete(key)
        reason = "file_too_large" if isinstance(exc, LimitedReader.TooLarge) else "archive_entry_corrupt"
        with rt.sessions() as session:
            repo.commit_rejected(session, None, item.id, reason, REASONS[reason], None)
        return False


def _waiting(rt: Runtime, reader: BatchReader, item: BatchItem, resumed: bool, exists: dict[str, bool]) -> bool:
    """Whether the item's bytes already wait in the inbox where its row says (`exists` caches
    existence checks: a resumed zip batch's items share one object)."""
    stored = reader.stored(item.file)
    if stored is not None and stored == InboxLocation(item.inbox_key or "", item.inbox_member):
        return True
    if not resumed or not item.inbox_key:
        return False
    if item.inbox_key not in exists:
        exists[item.inbox_key] = rt.store.exists(item.inbox_key)
    return exists[item.inbox_key]


def _place(rt: Runtime, reader: BatchReader, item: BatchItem) -> bool:
    """Put the item's bytes in the inbox: where this upload already stored them, else copied to
    `inbox/<item id>`; the row follows if they moved (a resumed batch whose first upload is gone)."""
    target = reader.stored(item.file)
    if target is None:
        target = InboxLocation(f"inbox/{item.id}")
        if not _upload(rt, reader, item, target.key):
            return False
    if target != InboxLocation(item.inbox_key or "", item.inbox_member):
        with rt.sessions() as session:
            repo.relocate_inbox(session, item.id, target.key, target.member)
    return True


def receive_batch(
    rt: Runtime,
    batch: Path | BatchReader,
    source: str,
    send: Callable[[str], None],
    progress: OnProgress | None = None,
    *,
    send_many: Callable[[list[str]], None] | None = None,
) -> IntakeResult:
    """Record a dropped batch, put each document in the inbox and `send` its item id right after.

    `batch` is a folder or zip path, or a reader over an upload (pipeline.ingest.uploads). The
    batch's rows are committed before the first upload, so a message never points at nothing.
    `progress(done, total)` is told after each item. Raises ManifestError if the batch is unusable as a
    whole, IntakeInterrupted if a service stayed unavailable through the retries (run it again: it
    resumes). Resuming a batch re-opens its items that ended `retries_exhausted` and processes them again.
    With `send_many`, the small documents that are not in the inbox yet go in packs (pipeline/ingest/packs.py),
    each sent as one message of its item ids.
    """
    if not is_patient_source(source):  # the patient's own uploads (pipeline/documents/contributed.py) come through here too
        kind, _ = parse_source(source)
        if kind not in DOCUMENT_SOURCES:
            raise SourceError("document batches come from hospital:ID or lab:ID sources")
    reader = open_batch(batch, ArchiveLimits.from_settings(rt.settings)) if isinstance(batch, Path) else batch
    data = reader.manifest_bytes()
    manifest = parse_manifest(data)
    present = reader.document_names()
    batch_id: str | None = None
    items: list[BatchItem] = []
    sent: list[str] = []
    try:
        digest = _manifest_digest(rt, source, data)
        batch_id, resumed = _retrying(rt, "record")(_record_batch, rt, source, digest, manifest, present, reader)
        items = _retrying(rt, "read")(_open_items, rt, batch_id, resumed)
        exists: dict[str, bool] = {}
        packer = Packer(rt, reader, send_many) if send_many is not None else None
        if packer is not None:
            packer.spread_over(sum(1 for item in items if item.state not in repo.FINAL_STATES))
        for done, item in enumerate(items, start=1):
            if item.state not in repo.FINAL_STATES:
                waiting = _retrying(rt, "check")(_waiting, rt, reader, item, resumed, exists)
                packable = packer is not None and not waiting and reader.stored(item.file) is None
                small = _retrying(rt, "read")(packer.read_small, item) if packer is not None and packable else True
                if isinstance(small, bytes) and packer is not None:
                    if not packer.fits(len(small)):
                        sent += _retrying(rt, "upload")(packer.flush)
                    packer.add(item.id, small)
                    if packer.full:
                        sent += _retrying(rt, "upload")(packer.flush)
                elif small and (waiting or _retrying(rt, "upload")(_place, rt, reader, item)):
                    _retrying(rt, "send")(send, item.id)
                    sent.append(item.id)
            if progress is not None:
                progress(done, len(items))
        if packer is not None:
            sent += _retrying(rt, "upload")(packer.flush)
        _retrying(rt, "record")(_mark_sent, rt, batch_id)
    except Exception as failure:
        if outage_of(failure) is None:
            raise
        raise IntakeInterrupted(failure_code(failure), batch_id, len(sent), len(items) if batch_id else None) from None
    rejected = sum(1 for item in items if item.state == ItemState.REJECTED)
    return IntakeResult(batch_id, len(items), sent, rejected, resumed)


def _open_items(rt: Runtime, batch_id: str, resumed: bool) -> list[BatchItem]:
    """The batch's items; a resumed batch first re-opens those its retries gave up on."""
    with rt.sessions() as session:
        if resumed:
            reopened = repo.reopen_exhausted(session, batch_id)
            if reopened:
                log.warning("batch %s: %d items rejected retries_exhausted are re-opened", batch_id, len(reopened))
        return list(repo.batch_items(session, batch_id))


def _mark_sent(rt: Runtime, batch_id: str) -> None:
    with rt.sessions() as session:
        repo.mark_sent(session, batch_id)


__all__ = ["IntakeInterrupted", "IntakeResult", "ManifestError", "receive_batch"]
