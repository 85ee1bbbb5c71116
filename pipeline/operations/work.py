"""The operator's view of the work: batches and feeds by source, state and date; stuck items;
rejected items by reason. Plain queries returning JSON-ready dicts (ids, states, reason codes,
file names and counts: never an INS, a title or content)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Literal, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.index.models import Batch, BatchItem, Feed, FeedChunk
from pipeline.index.states import ITEM_FINAL, ItemState

FINAL = ITEM_FINAL


Row = dict[str, Any]  # one JSON-ready line of a listing


class WorkState(StrEnum):
    """A batch or feed as a whole: some of it still waiting or running, or all of it final."""

    IN_PROGRESS = "in_progress"
    DONE = "done"


_Received = TypeVar("_Received", Batch, Feed)


def _when(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def list_batches(
    session: Session,
    *,
    source: str | None = None,
    state: WorkState | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
) -> list[Row]:
    """Batches and feeds received between `since` and `until` (newest first), from `source`, in `state`."""
    rows = [*_batches(session, source, since, until, limit), *_feeds(session, source, since, until, limit)]
    if state is not None:
        rows = [row for row in rows if row["state"] == state]
    return sorted(rows, key=lambda row: row["received_at"] or "", reverse=True)[:limit]


def _received(
    session: Session, model: type[_Received], source: str | None, since: dt.datetime | None, until: dt.datetime | None, limit: int
) -> Sequence[_Received]:
    """The newest `limit` batches or feeds (`model`) from `source` received in [since, until)."""
    query = select(model).order_by(model.created_at.desc()).limit(limit)
    if source:
        query = query.where(model.source == source)
    if since:
        query = query.where(model.created_at >= since)
    if until:
        query = query.where(model.created_at < until)
    return session.scalars(query).all()


def _work_row(kind: Literal["batch", "feed"], work: Batch | Feed, *, waiting: int, total: int, counts: dict[str, int]) -> Row:
    return {
        "kind": kind,
        "id": work.id,
        "source": work.source,
        "received_at": _when(work.created_at),
        "state": WorkState.IN_PROGRESS if waiting else WorkState.DONE,
        "total": total,
        "counts": counts,
    }


def _batches(session: Session, source: str | None, since: dt.datetime | None, until: dt.datetime | None, limit: int) -> list[Row]:
    batches = _received(session, Batch, source, since, until, limit)
    counts: dict[str, dict[str, int]] = {}
    if batches:
        by_state = select(BatchItem.batch_id, BatchItem.state, func.count()).where(BatchItem.batch_id.in_([b.id for b in batches]))
        for batch_id, item_state, count in session.execute(by_state.group_by(BatchItem.batch_id, BatchItem.state)):
            counts.setdefault(batch_id, {})[item_state] = count
    rows = []
    for batch in batches:
        mine = counts.get(batch.id, {})
        waiting = sum(n for s, n in mine.items() if s not in FINAL)
        rows.append(_work_row("batch", batch, waiting=waiting, total=batch.total, counts=mine))
    return rows


def _feeds(session: Session, source: str | None, since: dt.datetime | None, until: dt.datetime | None, limit: int) -> list[Row]:
    feeds = _received(session, Feed, source, since, until, limit)
    if not feeds:
        return []
    chunks: dict[str, dict[str, int]] = {}
    by_state = select(FeedChunk.feed_id, FeedChunk.state, func.count(), func.sum(FeedChunk.rejected)).where(
        FeedChunk.feed_id.in_([f.id for f in feeds])
    )
    for feed_id, chunk_state, count, rejected in session.execute(by_state.group_by(FeedChunk.feed_id, FeedChunk.state)):
        mine = chunks.setdefault(feed_id, {})
        mine[f"chunks_{chunk_state}"] = count
        mine["lines_rejected"] = mine.get("lines_rejected", 0) + (rejected or 0)
    rows = []
    for feed in feeds:
        mine = chunks.get(feed.id, {})
        waiting = sum(n for key, n in mine.items() if key.startswith("chunks_") and key != "chunks_done")
        rows.append(_work_row("feed", feed, waiting=waiting, total=feed.lines, counts=mine))
    return rows


def _item_row(item: BatchItem, source: str) -> Row:
    return {
        "item": item.id,
        "batch": item.batch_id,
        "source": source,
        "file": item.file,
        "state": item.state,
        "reason": item.reason,
        "attempts": item.attempts,
        "crashes": item.crashes,
        "started_at": _when(item.started_at),
        "finished_at": _when(item.finished_at),
    }


def stuck_items(session: Session, older_than: dt.timedelta, now: dt.datetime | None = None, limit: int = 1000) -> list[Row]:
    """Items in `processing` whose latest attempt started more than `older_than` ago (oldest first)."""
    since = (now or dt.datetime.now(dt.UTC)) - older_than
    query = (
        select(BatchItem, Batch.source)
        .join(Batch, Batch.id == BatchItem.batch_id)
        .where(BatchItem.state == ItemState.PROCESSING, BatchItem.started_at < since)
        .order_by(BatchItem.started_at)
        .limit(limit)
    )
    return [_item_row(item, source) for item, source in session.execute(query)]


def rejected_items(session: Session, *, reason: str | None = None, since: dt.datetime | None = None, limit: int = 1000) -> list[Row]:
    """Rejected items (newest first), of one `reason` code if given, finished after `since`."""
    query = select(BatchItem, Batch.source).join(Batch, Batch.id == BatchItem.batch_id).where(BatchItem.state == ItemState.REJECTED)
    if reason:
        query = query.where(BatchItem.reason == reason)
    if since:
        query = query.where(BatchItem.finished_at >= since)
    query = query.order_by(BatchItem.finished_at.desc()).limit(limit)
    return [_item_row(item, source) for item, source in session.execute(query)]


def rejected_by_reason(session: Session) -> dict[str, int]:
    """How many items are rejected, per reason code."""
    query = select(BatchItem.reason, func.count()).where(BatchItem.state == ItemState.REJECTED).group_by(BatchItem.reason)
    return {reason or "unknown": count for reason, count in session.execute(query)}
