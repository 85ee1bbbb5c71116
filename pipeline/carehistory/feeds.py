"""Processing one feed chunk: check each line, write the good ones in bulk, record the rest.

One transaction per chunk: the lines, their rejections, the corrections they make, the
patients' notifications and the chunk's state commit together, so a retry after a crash starts
from a clean slate, and re-sending lines that are already stored changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import update
from sqlalchemy.orm import Session

from pipeline.carehistory.chunkstore import store_lines
from pipeline.carehistory.feedformat import CareLine, LineRejection, check_line, parse_chunk
from pipeline.core import metrics
from pipeline.core.clock import paris_date
from pipeline.core.metrics import Stage, timed
from pipeline.core.outage import Interrupted, failure_code, outage_of
from pipeline.core.storage import ObjectNotFound
from pipeline.index.base import new_id
from pipeline.index.models import Feed, FeedChunk, FeedRejection
from pipeline.index.repo import Refusal, RowValues, insert_ignore, lease_held
from pipeline.index.states import AttemptOutcome, ChunkState
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def _claim(session: Session, chunk_id: str, lease: dt.timedelta, resuming: int | None) -> FeedChunk | Refusal:
    """Start an attempt on a chunk (see repo.claim_item: a live lease is another attempt's)."""
    chunk = session.get(FeedChunk, chunk_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if chunk is None or chunk.state == ChunkState.DONE:
        session.rollback()
        return Refusal.FINAL
    now = dt.datetime.now(dt.UTC)
    if chunk.state == ChunkState.PROCESSING and chunk.attempts != resuming and lease_held(chunk.lease_until, now):
        session.rollback()
        return Refusal.BUSY
    chunk.state, chunk.attempts, chunk.lease_until = ChunkState.PROCESSING, chunk.attempts + 1, now + lease
    session.commit()
    return chunk


def _release(rt: Runtime, chunk: FeedChunk, waiting_for_intake: bool = False) -> None:
    """The attempt ended without storing the chunk: it waits `queued` again (best effort during an
    outage: then the lease lapses, or this message's next try takes the chunk back)."""
    mine = (FeedChunk.id == chunk.id, FeedChunk.state == ChunkState.PROCESSING, FeedChunk.attempts == chunk.attempts)
    try:
        with rt.sessions() as session:
            session.execute(update(FeedChunk).where(*mine).values(state=ChunkState.QUEUED))
            if waiting_for_intake:  # the recovery sweep leaves the feed to its intake's next run
                session.execute(update(Feed).where(Feed.id == chunk.feed_id).values(sent_at=None))
            session.commit()
    except Exception as failure:
        if outage_of(failure) is None:
            raise


def check_chunk(data: bytes, feed: Feed, chunk: FeedChunk, today: dt.date) -> tuple[list[CareLine], list[LineRejection]]:
    """Parse and check every line of a chunk on its own (no database)."""
    header = feed.header.split(",") if feed.header else None
    lines: list[CareLine] = []
    rejections: list[LineRejection] = []
    for number, raw in parse_chunk(data, feed.format, header, chunk.first_line):
        checked = LineRejection(number, None, raw) if isinstance(raw, str) else check_line(number, raw, today)
        if isinstance(checked, CareLine):
            lines.append(checked)
        else:
            rejections.append(checked)
    return lines, rejections


def process_chunk(rt: Runtime, chunk_id: str, today: dt.date | None = None, resuming: int | None = None) -> AttemptOutcome:
    """Run one attempt on a feed chunk; idempotent. An outage raises Interrupted (as process_item)."""
    with rt.sessions() as session:
        chunk = _claim(session, chunk_id, dt.timedelta(seconds=rt.settings.claim_lease_seconds), resuming)
    if chunk is Refusal.FINAL:
        forget_inbox(rt, chunk_id)
        return AttemptOutcome.DONE
    if chunk is Refusal.BUSY:
        return AttemptOutcome.BUSY
    try:
        return _store_chunk(rt, chunk, today or paris_date())
    except Exception as failure:
        _release(rt, chunk)
        service = outage_of(failure)
        if service is None:
            raise
        raise Interrupted(service, failure_code(failure), chunk.attempts) from None


def _store_chunk(rt: Runtime, chunk: FeedChunk, today: dt.date) -> AttemptOutcome:
    with rt.sessions() as session:
        feed = session.get_one(Feed, chunk.feed_id)
    try:
        with rt.store.open(chunk.inbox_key or "") as handle:
            data = handle.read()
    except ObjectNotFound:
        log.warning("feed chunk %s has no inbox object; re-send the feed to resume it", chunk.id)
        _release(rt, chunk, waiting_for_intake=True)
        return AttemptOutcome.QUEUED
    lines, rejections = check_chunk(data, feed, chunk, today)
    with timed(Stage.FEED_CHUNK), rt.sessions() as session:
        written = store_lines(session, feed, lines, rt)
        fresh = written.fresh
        rejections += written.rejections
        insert_ignore(session, FeedRejection, [_rejection_row(feed.id, rejection) for rejection in rejections])
        current = session.get_one(FeedChunk, chunk.id)
        current.state, current.accepted, current.rejected = ChunkState.DONE, len(fresh), len(rejections)  # lease: see forget_inbox
        session.commit()
    rt.feed_notices.committed(feed.id, written.patients)
    kind = metrics.source_kind(feed.source)
    metrics.documents_indexed.labels(kind).inc(len(fresh))
    for rejection in rejections:
        metrics.documents_rejected.labels(kind, rejection.reason).inc()
    forget_inbox(rt, chunk.id, chunk.inbox_key)
    return AttemptOutcome.DONE


def _rejection_row(feed_id: str, rejection: LineRejection) -> RowValues:
    return {"id": new_id(), "feed_id": feed_id, "line_number": rejection.line_number, "line_id": rejection.line_id,
            "reason": rejection.reason, "message": rejection.message}  # fmt: skip


def forget_inbox(rt: Runtime, chunk_id: str, inbox_key: str | None = None) -> None:
    """Remove a done chunk's inbox copy, then clear its lease (kept so that the recovery sweep
    finishes this if the worker dies in between)."""
    if inbox_key is None:
        with rt.sessions() as session:
            chunk = session.get(FeedChunk, chunk_id)
            inbox_key = chunk.inbox_key if chunk else None
    if inbox_key:
        rt.store.delete(inbox_key)
    with rt.sessions() as session:
        done = (FeedChunk.id == chunk_id, FeedChunk.state == ChunkState.DONE, FeedChunk.lease_until.is_not(None))
        session.execute(update(FeedChunk).where(*done).values(lease_until=None))
        session.commit()
