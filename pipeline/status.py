"""A batch's state for `dmp status` and `dmp ingest`: per item, and counted."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.index import repo
from pipeline.index.models import Batch, BatchItem, Feed, FeedChunk, FeedRejection


@dataclass(frozen=True)
class Counts:
    """A batch's items (or a feed's lines) in all, and how many of them are final."""

    total: int
    indexed: int
    rejected: int

    @property
    def done(self) -> int:
        return self.indexed + self.rejected


class UnknownBatch(LookupError):
    pass


def batch_status(session: Session, batch_id: str) -> dict:
    """The JSON document of `dmp status BATCH --json` (a public shape: scripts read it)."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise UnknownBatch(batch_id)
    items = repo.batch_items(session, batch_id)
    documents = repo.documents_by_id(session, [i.document_id for i in items if i.state == "indexed"])
    rows = []
    for item in items:
        document = documents.get(item.document_id) if item.state == "indexed" else None
        rows.append(
            {
                "file": item.file,
                "source_document_id": item.source_document_id,
                "state": item.state,
                "reason": item.reason if item.state == "rejected" else None,
                "message": item.message if item.state == "rejected" else None,
                "document_id": document.id if document else None,
                "class_code": document.class_code if document else None,
                "type_code": document.type_code if document else None,
                "attempts": item.attempts,
            }
        )
    return {
        "kind": "batch",
        "batch": batch.id,
        "source": batch.source,
        "total": len(rows),
        "counts": repo.batch_counts(session, batch_id),
        "items": rows,
    }


def counts(session: Session, batch_id: str) -> Counts:
    by_state = repo.batch_counts(session, batch_id)
    return Counts(sum(by_state.values()), by_state.get("indexed", 0), by_state.get("rejected", 0))


def feed_status(session: Session, feed_id: str) -> dict:
    """A feed's outcome: lines stored, already known, rejected (with line numbers and reasons)."""
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise UnknownBatch(feed_id)
    chunks = session.scalars(select(FeedChunk).where(FeedChunk.feed_id == feed_id)).all()
    rejections = session.scalars(select(FeedRejection).where(FeedRejection.feed_id == feed_id).order_by(FeedRejection.line_number)).all()
    done = [c for c in chunks if c.state == "done"]
    accepted, rejected = sum(c.accepted for c in done), sum(c.rejected for c in done)
    return {
        "kind": "feed",
        "batch": feed.id,
        "feed": feed.id,
        "source": feed.source,
        "format": feed.format,
        "total": feed.lines,
        "counts": {
            "accepted": accepted,
            "rejected": rejected,
            "unchanged": sum(c.lines for c in done) - accepted - rejected,
            "pending_lines": sum(c.lines for c in chunks if c.state != "done"),
        },
        "rejections": [{"line_number": r.line_number, "line_id": r.line_id, "reason": r.reason, "message": r.message} for r in rejections],
    }


def any_status(session: Session, ref: str) -> dict:
    """The status of a batch or, failing that, of a feed."""
    try:
        return batch_status(session, ref)
    except UnknownBatch:
        return feed_status(session, ref)


def any_counts(session: Session, ref: str) -> Counts:
    if session.get(Batch, ref) is not None:
        return counts(session, ref)
    feed = session.get(Feed, ref)
    chunks = session.scalars(select(FeedChunk).where(FeedChunk.feed_id == ref)).all()
    done_lines = sum(c.lines for c in chunks if c.state == "done")
    rejected = sum(c.rejected for c in chunks if c.state == "done")
    return Counts(feed.lines if feed else 0, done_lines - rejected, rejected)


def pending_chunks(session: Session, feed_id: str) -> int:
    """Chunks of a feed not yet processed."""
    query = select(func.count()).select_from(FeedChunk).where(FeedChunk.feed_id == feed_id, FeedChunk.state != "done")
    return session.scalar(query) or 0


def queue_depth(session: Session) -> int:
    """Documents and feed chunks waiting for a worker (state `queued`): the ingestion queue's depth."""
    items = session.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state == "queued")) or 0
    chunks = session.scalar(select(func.count()).select_from(FeedChunk).where(FeedChunk.state == "queued")) or 0
    return items + chunks
