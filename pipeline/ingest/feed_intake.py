"""Intake of an insurer feed: identify it, cut it into chunks in the inbox, send one message per chunk.

The feed's keyed hash identifies it: the same file from the same source is the same feed, so a
re-send resumes it (uploads missing chunks, re-sends unfinished ones) and changes nothing else.
Memory stays flat: the file is read twice as a stream (hash, then chunks), never held whole.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pipeline.index.models import Feed, FeedChunk, new_id
from pipeline.ingest.feed import FeedError, csv_header, feed_format, split_lines
from pipeline.runtime import Runtime

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FeedIntake:
    feed_id: str
    lines: int
    chunks: int
    sent: list[str]
    resumed: bool


def _digest(rt: Runtime, source: str, path: Path) -> str:
    mac = hmac.new(rt.hmac_secret, source.encode() + b"\0", "sha256")
    with path.open("rb") as handle:
        while block := handle.read(HASH_CHUNK):
            mac.update(block)
    return mac.hexdigest()


def _existing(rt: Runtime, source: str, digest: str) -> str | None:
    with rt.sessions() as session:
        return session.scalars(select(Feed.id).where(Feed.source == source, Feed.digest == digest)).first()


def receive_feed(rt: Runtime, path: Path, source: str, send: Callable[[str], None]) -> FeedIntake:
    """Record a feed and its chunks, store each chunk in the inbox, and `send` its id once stored."""
    if not path.is_file():
        raise FeedError(f"{path} is not a file")
    digest = _digest(rt, source, path)
    feed_id = _existing(rt, source, digest)
    resumed = feed_id is not None
    if feed_id is None:
        feed_id = _record(rt, path, source, digest)
    with rt.sessions() as session:
        feed = session.get(Feed, feed_id)
        chunks = session.scalars(select(FeedChunk).where(FeedChunk.feed_id == feed_id).order_by(FeedChunk.number)).all()
    sent: list[str] = []
    with path.open("rb") as handle:
        if feed.format == "csv":
            handle.readline()
        stored = {chunk.number: chunk for chunk in chunks}
        for number, (_, data, _) in enumerate(split_lines(handle, rt.settings.feed_chunk_lines)):
            chunk = stored[number]
            if chunk.state == "done":
                continue
            if not resumed or not rt.store.exists(chunk.inbox_key or ""):
                rt.store.put(chunk.inbox_key or "", io.BytesIO(data))
            send(chunk.id)
            sent.append(chunk.id)
    return FeedIntake(feed_id, feed.lines, len(chunks), sent, resumed)


def _record(rt: Runtime, path: Path, source: str, digest: str) -> str:
    """First pass: count lines per chunk (streamed), then record the feed and its chunks at once."""
    with path.open("rb") as handle:
        head = handle.read(64)
        handle.seek(0)
        fmt = feed_format(path.name, head)
        header = ",".join(csv_header(handle.readline())) if fmt == "csv" else None
        first_number = 2 if fmt == "csv" else 1
        plan = [(first + first_number - 1, count) for first, _, count in split_lines(handle, rt.settings.feed_chunk_lines)]
    feed_id = new_id()
    with rt.sessions() as session:
        session.add(
            Feed(id=feed_id, source=source, digest=digest, format=fmt, header=header, lines=sum(c for _, c in plan), chunks=len(plan))
        )
        session.flush()
        for number, (first, count) in enumerate(plan):
            chunk_id = new_id()
            session.add(
                FeedChunk(
                    id=chunk_id,
                    feed_id=feed_id,
                    number=number,
                    first_line=first,
                    lines=count,
                    inbox_key=f"inbox/feeds/{chunk_id}",
                    attempts=0,
                    accepted=0,
                    rejected=0,
                )
            )
        try:
            session.commit()
        except IntegrityError:  # the same feed recorded concurrently
            session.rollback()
            return _existing(rt, source, digest) or feed_id
    return feed_id
