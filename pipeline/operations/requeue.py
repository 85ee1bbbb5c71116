"""`dmp requeue`: give items another run after a failure that was not a verdict on the document.

Which items: those rejected `retries_exhausted` (a failure outlived every retry) or
`processing_crashed` (its attempts kept dying), and those stuck in `processing`. Other rejections
are verdicts on the document (bad INS, unreadable PDF…) and are never re-opened here.

A rejected item's inbox copy was deleted when it ended; its bytes come back from the encrypted
quarantine copy (DMP_QUARANTINE_DAYS) into the inbox, or from the shared zip if other items still
wait on it. With neither, the batch must be sent again (`dmp ingest` the same folder or zip): the
report says so per item. A stuck item's lease is cleared, so the next claim takes it from a worker
that hangs (whose late commit is then refused: the attempt is no longer its own).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select, update

from pipeline.core.keys import WrappedKey
from pipeline.core.sealedfields import quarantine_key_context
from pipeline.core.sealing import unseal
from pipeline.index.models import BatchItem
from pipeline.index.repo import affected
from pipeline.index.states import ItemState
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


class Requeueable(StrEnum):
    """The rejection reasons `dmp requeue` re-opens."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    PROCESSING_CRASHED = "processing_crashed"


class Skipped(StrEnum):
    """Why an item named for requeue was left as it is."""

    NOT_REQUEUEABLE = "not_requeueable"  # final for a reason that is a verdict, or indexed
    UNKNOWN = "unknown"
    BYTES_GONE = "bytes_gone"  # no inbox nor quarantine copy: send the batch again
    CHANGED = "changed"  # its state changed while we looked


@dataclass
class RequeueReport:
    requeued: list[str] = field(default_factory=list)
    skipped: dict[str, Skipped] = field(default_factory=dict)


def candidates(
    rt: Runtime,
    *,
    reasons: tuple[Requeueable, ...] = tuple(Requeueable),
    stuck_after: dt.timedelta | None = None,
    batch_id: str | None = None,
) -> list[str]:
    """Ids of the items rejected for one of `reasons`, and of those processing for longer than `stuck_after`."""
    rejected = (BatchItem.state == ItemState.REJECTED, BatchItem.reason.in_([r.value for r in reasons]))
    scope = (BatchItem.batch_id == batch_id,) if batch_id else ()
    with rt.sessions() as session:
        ids = list(session.scalars(select(BatchItem.id).where(*rejected, *scope))) if reasons else []
        if stuck_after is not None:
            since = dt.datetime.now(dt.UTC) - stuck_after
            stuck = (BatchItem.state == ItemState.PROCESSING, BatchItem.started_at < since)
            ids += list(session.scalars(select(BatchItem.id).where(*stuck, *scope)))
    return ids


def requeue(rt: Runtime, item_ids: list[str], send: Callable[[str], object]) -> RequeueReport:
    """Re-open each of `item_ids` that may be (see the module's docstring) and `send` its message."""
    report = RequeueReport()
    for item_id in item_ids:
        outcome = _reopen(rt, item_id)
        if outcome is None:
            send(item_id)
            report.requeued.append(item_id)
            log.info("item %s requeued", item_id)
        else:
            report.skipped[item_id] = outcome
    return report


def _reopen(rt: Runtime, item_id: str) -> Skipped | None:
    with rt.sessions() as session:
        item = session.get(BatchItem, item_id)
    if item is None:
        return Skipped.UNKNOWN
    if item.state == ItemState.PROCESSING:
        return _release_stuck(rt, item)
    if item.state == ItemState.QUEUED:
        return None  # waiting already: a fresh message does no harm (an item is claimed once)
    if item.state != ItemState.REJECTED or item.reason not in set(Requeueable):
        return Skipped.NOT_REQUEUEABLE
    location = _bytes_back(rt, item)
    if location is None:
        return Skipped.BYTES_GONE
    inbox_key, member = location
    reopen = {
        "state": ItemState.QUEUED,
        "reason": None,
        "message": None,
        "finished_at": None,
        "lease_until": None,
        "crashes": 0,
        "inbox_key": inbox_key,
        "inbox_member": member,
    }
    with rt.sessions() as session:
        still = (BatchItem.id == item_id, BatchItem.state == ItemState.REJECTED, BatchItem.reason == item.reason)
        changed = affected(session.execute(update(BatchItem).where(*still).values(**reopen)))
        session.commit()
    return None if changed == 1 else Skipped.CHANGED


def _release_stuck(rt: Runtime, item: BatchItem) -> Skipped | None:
    with rt.sessions() as session:
        mine = (BatchItem.id == item.id, BatchItem.state == ItemState.PROCESSING, BatchItem.attempts == item.attempts)
        changed = affected(session.execute(update(BatchItem).where(*mine).values(lease_until=None)))
        session.commit()
    return None if changed == 1 else Skipped.CHANGED


def _bytes_back(rt: Runtime, item: BatchItem) -> tuple[str, str | None] | None:
    """Where the item's bytes wait in the inbox again: its own copy if still there, else the
    quarantine copy decrypted into the inbox; None when neither is left."""
    if item.inbox_key and rt.store.exists(item.inbox_key):
        return item.inbox_key, item.inbox_member
    if not (item.quarantine_key and item.quarantine_wrapped_key and item.quarantine_master_key_id):
        return None
    context = quarantine_key_context(item.id)
    key = rt.keys.unwrap(WrappedKey(item.quarantine_master_key_id, item.quarantine_wrapped_key), context)
    inbox_key = f"inbox/requeued/{item.id}"
    plaintext = unseal(rt.store, item.quarantine_key, key, context, rt.hasher())
    rt.store.put(inbox_key, io.BufferedReader(_ChunkReader(plaintext), buffer_size=1024 * 1024))
    return inbox_key, None


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (streamed: memory stays at one chunk)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._left = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = chunk
        size = min(len(buffer), len(self._left))
        buffer[:size], self._left = self._left[:size], self._left[size:]
        return size
