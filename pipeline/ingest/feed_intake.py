"""Intake of an insurer feed: identify it, cut it into chunks in the inbox, send one message per chunk.

The feed's keyed hash identifies it: the same file from the same source is the same feed, so a
re-send resumes it (uploads missing chunks, re-sends unfinished ones) and changes nothing else.
Memory stays flat: the file is read as a stream, never held whole: once to identify it (keyed hash) and plan
its chunks (line numbers and byte ranges), then once more to store the chunks still missing, each a byte range
(no line cut again); a feed with none missing is read once. Its identity must be known before anything of it is
recorded, stored or sent, so the two reads cannot be one without holding the chunks meanwhile.
"""

from __future__ import annotations

import contextlib
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

from pipeline.carehistory.feedformat import FeedError, blocks_of_lines, csv_header, feed_format, plan_chunks
from pipeline.core import metrics
from pipeline.index.base import new_id
from pipeline.index.models import Feed, FeedChunk
from pipeline.index.states import ChunkState, FeedFormat
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


@dataclass(frozen=True)
class _Plan:
    """How a feed is cut: its format, CSV header, first data byte, and per chunk (first line number, byte length,
    lines)."""

    format: FeedFormat
    header: str | None
    start: int
    chunks: list[tuple[int, int, int]]


def _plan(feed: FeedFile, chunk_lines: int, mac: hmac.HMAC | None, fmt: FeedFormat | None = None) -> _Plan:
    """One read of the file: where its chunks are and, given a `mac`, its keyed hash (fed every byte as read)."""
    with feed.open() as handle:
        blocks = blocks_of_lines(handle, watch=mac.update if mac is not None else None)
        opening = next(blocks, b"")
        head = opening[: opening.find(b"\n") + 1] or opening
        fmt = fmt or feed_format(feed.name, head[:64])
        header = ",".join(csv_header(head)) if fmt == FeedFormat.CSV else None
        first_number = 2 if fmt == FeedFormat.CSV else 1
        data = itertools.chain([opening[len(head) :]] if fmt == FeedFormat.CSV else [opening], blocks)
        chunked = plan_chunks(data, chunk_lines, quoted=fmt == FeedFormat.CSV)
        chunks = [(first + first_number - 1, size, count) for first, size, count in chunked]
    return _Plan(fmt, header, len(head) if fmt == FeedFormat.CSV else 0, chunks)


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
    the bytes; otherwise it is taken in the read that plans the chunks. `progress(lines, total)` is
    told after each chunk.
    """
    if isinstance(feed, Path):
        feed = FeedFile.from_path(feed)
    mac = None if digest else feed_hasher(rt, source)
    plan = _plan(feed, rt.settings.feed_chunk_lines, mac)
    digest = digest or (mac.hexdigest() if mac is not None else "")
    feed_id = _existing(rt, source, digest)
    resumed = feed_id is not None
    if feed_id is None:
        feed_id = _record(rt, plan, source, digest)
    with rt.sessions() as session:
        record = session.get_one(Feed, feed_id)
        chunks = session.scalars(select(FeedChunk).where(FeedChunk.feed_id == feed_id).order_by(FeedChunk.number)).all()
    if record.format != plan.format:  # the same bytes sent before under another name: cut them as then
        plan = _plan(feed, rt.settings.feed_chunk_lines, None, record.format)
    if [(c.first_line, c.lines) for c in chunks] != [(first, lines) for first, _, lines in plan.chunks]:
        raise FeedError(f"feed {feed_id} was cut into other chunks when first received (DMP_FEED_CHUNK_LINES changed?)")
    waiting = [c for c in chunks if c.state != ChunkState.DONE]
    upload = {c.number for c in waiting if not resumed or not rt.store.exists(c.inbox_key or "")}
    sent: list[str] = []
    with feed.open() if upload else contextlib.nullcontext(None) as handle:
        pieces = _pieces(handle, plan, upload) if handle is not None else iter(())
        taken = 0
        for chunk in chunks:
            if chunk.number in upload:
                rt.store.put(chunk.inbox_key or "", io.BytesIO(next(pieces)))
            if chunk.state != ChunkState.DONE:
                send(chunk.id)
                sent.append(chunk.id)
            taken += chunk.lines
            if progress is not None:
                progress(taken, record.lines)
    with rt.sessions() as session:  # from now on the recovery sweep may re-send a chunk the broker lost
        session.execute(update(Feed).where(Feed.id == feed_id).values(sent_at=dt.datetime.now(dt.UTC)))
        session.commit()
    return FeedIntake(feed_id, record.lines, len(chunks), sent, resumed)


def _pieces(handle: BinaryIO, plan: _Plan, wanted: set[int]) -> Iterator[bytes]:
    """The bytes of the `wanted` chunks, in order, from a second read of the file that cuts no lines: each chunk is
    its byte range of the plan (one chunk in memory at a time)."""
    last = max(wanted)
    _read(handle, plan.start, keep=False)
    for number, (_, size, _) in enumerate(plan.chunks[: last + 1]):
        data = _read(handle, size, keep=number in wanted)
        if number in wanted:
            yield data


def _read(handle: BinaryIO, size: int, keep: bool) -> bytes:
    """The next `size` bytes of a stream (any `.read()` may give fewer than asked), or only past them."""
    parts: list[bytes] = []
    while size > 0:
        piece = handle.read(min(size, HASH_CHUNK) if not keep else size)
        if not piece:
            raise FeedError("the feed file changed while it was read: send it again")
        size -= len(piece)
        if keep:
            parts.append(piece)
    return b"".join(parts)


def _record(rt: Runtime, plan: _Plan, source: str, digest: str) -> str:
    """Record the feed and its chunks at once, as planned."""
    lines = sum(count for _, _, count in plan.chunks)
    feed_id = new_id()
    with rt.sessions() as session:
        session.add(
            Feed(id=feed_id, source=source, digest=digest, format=plan.format, header=plan.header, lines=lines, chunks=len(plan.chunks))
        )
        session.flush()
        for number, (first, _, count) in enumerate(plan.chunks):
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
    metrics.documents_received.labels(metrics.source_kind(source)).inc(lines)
    return feed_id
