"""Intake of an insurer feed: identify it, cut it into chunks in the inbox, send one message per chunk.

The feed's keyed hash identifies it: the same file from the same source is the same feed, so a
re-send resumes it (uploads missing chunks, re-sends unfinished ones) and changes nothing else.
Memory stays flat: the file is read twice as a stream (hash, then chunks), never held whole.
"""

from __future__ import annotations

import datetime as dt
import hmac
import io
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from pipeline.carehistory.feedformat import FeedError, csv_header, feed_format, iter_lines, split_lines
from pipeline.core import metrics
from pipeline.index.models import Feed, FeedChunk, new_id
from pipeline.ingest.intake import OnProgress
from pipeline.runtime import Runtime

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FeedIntake:
    feed_id: str
    lines: int
    chunks: int
    sent: list[str]
    resumed: bool


@dataclass(frozen=True)
class FeedFile:
    """A feed's bytes, readable more than once: a local file, or an upload kept in the inbox."""

    name: str  # its extension tells the format (.csv, .ndjson); else the first byte does
    open: Callable[[], AbstractContextManager[BinaryIO]]

    @classmethod
    def from_path(cls, path: Path) -> FeedFile:
        if not path.is_file():
            raise FeedError(f"{path} is not a file")
        return cls(path.name, lambda: path.open("rb"))


def feed_hasher(rt: Runtime, source: str) -> hmac.HMAC:
    """The keyed hash that identifies a feed: fed the file's bytes, it names the feed for `source`."""
    return hmac.new(rt.hmac_secret, source.encode() + b"\0", "sha256")


def _digest(rt: Runtime, source: str, feed: FeedFile) -> str:
    mac = feed_hasher(rt, source)
    with feed.open() as handle:
        while block := handle.read(HASH_CHUNK):
            mac.update(block)
    return mac.hexdigest()


def _data_lines(handle: BinaryIO, fmt: str) -> Iterator[bytes]:
    """The lines after the CSV header (every line of NDJSON)."""
    lines = iter_lines(handle)
    if fmt == "csv":
        next(lines, None)
    return lines


def _existing(rt: Runtime, source: str, digest: str) -> str | None:
    with rt.sessions() as session:
        return session.scalars(select(Feed.id).where(Feed.source == source, Feed.digest == digest)).first()


def receive_feed(
    rt: Runtime,
    feed: Path | FeedFile,
    source: str,
    send: Callable[[str], None],
    digest: str | None = None,
    progress: OnProgress | None = None,
) -> FeedIntake:
    """Record a feed and its chunks, store each chunk in the inbox, and `send` its id once stored.

    `digest` is the feed's keyed hash (`feed_hasher`) when the caller computed it while receiving
    the bytes; otherwise the file is read once more to compute it. `progress(lines, total)` is told
    after each chunk.
    """
    if isinstance(feed, Path):
        feed = FeedFile.from_path(feed)
    digest = digest or _digest(rt, source, feed)
    feed_id = _existing(rt, source, digest)
    resumed = feed_id is not None
    if feed_id is None:
        feed_id = _record(rt, feed, source, digest)
    with rt.sessions() as session:
        record = session.get(Feed, feed_id)
        chunks = session.scalars(select(FeedChunk).where(FeedChunk.feed_id == feed_id).order_by(FeedChunk.number)).all()
    sent: list[str] = []
    with feed.open() as handle:
        stored = {chunk.number: chunk for chunk in chunks}
        chunked = split_lines(_data_lines(handle, record.format), rt.settings.feed_chunk_lines, quoted=record.format == "csv")
        taken = 0
        for number, (_, data, lines) in enumerate(chunked):
            chunk = stored[number]
            if chunk.state != "done":
                if not resumed or not rt.store.exists(chunk.inbox_key or ""):
                    rt.store.put(chunk.inbox_key or "", io.BytesIO(data))
                send(chunk.id)
                sent.append(chunk.id)
            taken += lines
            if progress is not None:
                progress(taken, record.lines)
    with rt.sessions() as session:  # from now on the recovery sweep may re-send a chunk the broker lost
        session.execute(update(Feed).where(Feed.id == feed_id).values(sent_at=dt.datetime.now(dt.UTC)))
        session.commit()
    return FeedIntake(feed_id, record.lines, len(chunks), sent, resumed)


def _record(rt: Runtime, feed: FeedFile, source: str, digest: str) -> str:
    """First pass: count lines per chunk (streamed), then record the feed and its chunks at once."""
    with feed.open() as handle:
        lines = iter_lines(handle)
        head = next(lines, b"")
        fmt = feed_format(feed.name, head[:64])
        header = ",".join(csv_header(head)) if fmt == "csv" else None
        first_number = 2 if fmt == "csv" else 1
        data_lines = lines if fmt == "csv" or not head else itertools.chain([head], lines)
        chunked = split_lines(data_lines, rt.settings.feed_chunk_lines, quoted=fmt == "csv")
        plan = [(first + first_number - 1, count) for first, _, count in chunked]
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
    metrics.documents_received.labels(metrics.source_kind(source)).inc(sum(c for _, c in plan))
    return feed_id
