"""Unfinished work comes back by itself: claims held under a lease, and a sweep driven by the index.

Why the index and not the broker: the index knows what is unfinished whatever the broker kept.
dramatiq's Redis broker gives a dead worker's messages back only once its heartbeat is
DMP_BROKER_HEARTBEAT_TIMEOUT_MS old *and* a maintenance pass happens to run (a chance per
command), and a Redis restarted without persistence has lost every message. Claims are
idempotent, so sending a message twice is harmless: one for a final item does nothing, one for an
item that a live attempt holds is dropped (repo.claim_item).

A claim's lease (`lease_until`, DMP_CLAIM_LEASE_SECONDS) says a live worker process is on the item
or chunk: the process renews it while one of its actors holds the message, waiting out an outage
included. Every `dmp worker` process runs one `Recovery` thread which, every third of a lease:

1. renews the leases of what its actors hold (one UPDATE per table);
2. puts back to `queued` the claims whose lease lapsed, whose worker therefore died (a crash for an
   item), and sends them again. This thread must have reached the index for a whole lease first,
   so that leases which lapsed while the index was down are renewed by their live workers before
   anyone judges them;
3. when no message waits in the broker's document queue (taken ones aside), sends again every `queued` item and chunk
   that no live worker holds, of a batch or feed whose intake had finished sending (`sent_at`):
   the broker lost their messages (a Redis restarted without persistence), or a dead worker took
   them without claiming them. Each such send reserves the item for a lease, so a message that
   still waits somewhere costs at most one duplicate per lease. With step 2 it deletes the inbox
   copy (plaintext) of final items whose worker died between the commit and that delete: a final
   item keeps its lease until then;
4. when the broker holds no message at all for the jobs queue while the retention schedule was started, sends it again.

Steps 2-4 run in one process at a time (a Redis key with an expiry).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from pipeline.carehistory import feeds
from pipeline.core.outage import OutageWatch, Service, failure_code, outage_of
from pipeline.index.models import Batch, BatchItem, Feed, FeedChunk, JobRun
from pipeline.index.repo import RowValues
from pipeline.index.states import ITEM_FINAL, ITEM_IN_FLIGHT, ChunkState, ItemState, JobName
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
SWEEP_LOCK = "dmp:recovery-sweep"
BATCH_LIMIT = 1000  # rows one pass sends at most; the next pass goes on


class Kind(StrEnum):
    ITEM = "item"
    CHUNK = "chunk"


@dataclass
class WorkerState:
    """What a worker process's actors share with its recovery thread."""

    watch: OutageWatch = field(default_factory=OutageWatch)
    stopping: threading.Event = field(default_factory=threading.Event)
    _held: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def holding(self, kind: str, ref: str) -> Iterator[None]:
        """While an actor works on `ref`, this process renews its claim's lease."""
        with self._lock:
            self._held[kind, ref] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[kind, ref] -= 1
                if self._held[kind, ref] <= 0:
                    del self._held[kind, ref]

    def held(self, kind: str) -> list[str]:
        with self._lock:
            return [ref for held_kind, ref in self._held if held_kind == kind]


def renew_leases(rt: Runtime, items: list[str], chunks: list[str], until: dt.datetime) -> None:
    """Extend the leases of what this process's actors hold."""
    with rt.sessions() as session:
        if items:
            held_items = (BatchItem.id.in_(items), BatchItem.state.in_(ITEM_IN_FLIGHT))
            session.execute(update(BatchItem).where(*held_items).values(lease_until=until))
        if chunks:
            held_chunks = (FeedChunk.id.in_(chunks), FeedChunk.state != ChunkState.DONE)
            session.execute(update(FeedChunk).where(*held_chunks).values(lease_until=until))
        session.commit()


def _lapsed(model: type[BatchItem] | type[FeedChunk], now: dt.datetime) -> ColumnElement[bool]:
    return or_(model.lease_until.is_(None), model.lease_until < now)


def release_lapsed(rt: Runtime, now: dt.datetime, limit: int = BATCH_LIMIT) -> tuple[list[str], list[str]]:
    """Put back to `queued` the items and chunks whose claim's lease lapsed (a crash for an item);
    returns their ids, to be sent again."""
    with rt.sessions() as session:
        lapsed = (BatchItem.state == ItemState.PROCESSING, _lapsed(BatchItem, now))
        items = _requeue(session, BatchItem, lapsed, {"state": ItemState.QUEUED, "crashes": BatchItem.crashes + 1}, limit)
        lapsed = (FeedChunk.state == ChunkState.PROCESSING, _lapsed(FeedChunk, now))
        chunks = _requeue(session, FeedChunk, lapsed, {"state": ChunkState.QUEUED}, limit)
        session.commit()
    return items, chunks


def _requeue(
    session: Session, model: type[BatchItem] | type[FeedChunk], lapsed: tuple[ColumnElement[bool], ...], values: RowValues, limit: int
) -> list[str]:
    ids = list(session.scalars(select(model.id).where(*lapsed).limit(limit)))
    if ids:  # the conditions again: a claim renewed or taken over meanwhile keeps its lease
        statement = update(model).where(model.id.in_(ids), *lapsed).values(lease_until=None, **values)
        ids = list(session.scalars(statement.returning(model.id)))
    return ids


def reserve_unsent(rt: Runtime, now: dt.datetime, limit: int = BATCH_LIMIT) -> tuple[list[str], list[str]]:
    """Items and chunks waiting `queued` that no live worker holds, in batches and feeds whose
    intake had sent every message a lease ago or more: reserved for a lease and returned, to be sent
    again (the caller saw no message waiting in the broker)."""
    lease = dt.timedelta(seconds=rt.settings.claim_lease_seconds)
    reserved: list[list[str]] = []
    with rt.sessions() as session:
        kinds = ((BatchItem, Batch, BatchItem.batch_id, ItemState.QUEUED), (FeedChunk, Feed, FeedChunk.feed_id, ChunkState.QUEUED))
        for model, parent, link, queued in kinds:
            sent = select(parent.id).where(parent.sent_at.is_not(None), parent.sent_at < now - lease)
            waiting = (model.state == queued, _lapsed(model, now), link.in_(sent))
            ids = list(session.scalars(select(model.id).where(*waiting).limit(limit)))
            if ids:
                statement = update(model).where(model.id.in_(ids), *waiting).values(lease_until=now + lease)
                ids = list(session.scalars(statement.returning(model.id)))
            reserved.append(ids)
        session.commit()
    return reserved[0], reserved[1]


def unforgotten(rt: Runtime, now: dt.datetime, limit: int = BATCH_LIMIT) -> tuple[list[str], list[str]]:
    """Final items and done chunks whose lease lapsed before their inbox copy was deleted: their
    worker died between the commit and the delete, and the plaintext is still in the inbox."""
    with rt.sessions() as session:
        items = session.scalars(select(BatchItem.id).where(BatchItem.state.in_(ITEM_FINAL), BatchItem.lease_until < now).limit(limit))
        chunks = session.scalars(select(FeedChunk.id).where(FeedChunk.state == ChunkState.DONE, FeedChunk.lease_until < now).limit(limit))
        return list(items), list(chunks)


def retention_started(rt: Runtime) -> bool:
    """Whether `dmp retention schedule` ever ran here (a scheduled run was recorded)."""
    with rt.sessions() as session:
        return session.scalar(select(JobRun.id).where(JobRun.job == JobName.RETENTION).limit(1)) is not None


def messages_held(broker: dramatiq.Broker, queue: str, taken: bool = False) -> int:
    """How many messages of `queue` the broker holds waiting for a worker; with `taken`, also those
    delayed or that a worker took and has not acknowledged (a dead worker's stay until the broker's
    maintenance). Without it, what workers took is not counted: the index says if they claimed it."""
    if isinstance(broker, StubBroker):
        return int(broker.queues[queue].qsize() + (broker.queues[dq_name(queue)].qsize() if taken else 0))
    # dramatiq's Redis layout (dramatiq/brokers/redis/dispatch.lua): the list "<namespace>:<queue>"
    # holds the ids of waiting messages; the hashes "<namespace>:<queue>.msgs" and "….DQ.msgs" hold
    # every message until it is acknowledged.
    if not isinstance(broker, RedisBroker):
        raise TypeError(f"no message count for a {type(broker).__name__}")
    client, namespace = broker.client, broker.namespace
    if not taken:
        return client.llen(f"{namespace}:{queue}")
    return client.hlen(f"{namespace}:{queue}.msgs") + client.hlen(f"{namespace}:{dq_name(queue)}.msgs")


@dataclass
class Senders:
    item: Callable[[str], None]
    chunk: Callable[[str], None]
    retention: Callable[[], None]


class Recovery:
    """The recovery thread of one worker process (see the module's docstring)."""

    def __init__(self, rt: Runtime, broker: dramatiq.Broker, queues: tuple[str, str], state: WorkerState, senders: Senders) -> None:
        self.rt, self.broker, self.state, self.senders = rt, broker, state, senders
        self.queue, self.jobs_queue = queues
        self.lease = dt.timedelta(seconds=rt.settings.claim_lease_seconds)
        self.interval = rt.settings.claim_lease_seconds / 3
        self.reachable_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="dmp-recovery", daemon=True)

    def start(self) -> Recovery:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self.state.stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self.state.stopping.wait(self.interval):
            try:
                self.run_once()
            except Exception as failure:  # a service is down: the next pass tries again
                service = outage_of(failure)
                if service == Service.DATABASE:
                    self.reachable_since = None
                elif service is None:
                    log.error("recovery pass failed: %s", failure_code(failure))

    def run_once(self) -> None:
        """One pass: renew this process's leases; then, if no other process sweeps now, sweep."""
        now = dt.datetime.now(dt.UTC)
        renew_leases(self.rt, self.state.held(Kind.ITEM), self.state.held(Kind.CHUNK), now + self.lease)
        if self.reachable_since is None:
            self.reachable_since = time.monotonic()
        if not self._sweep_is_mine():
            return
        judge = time.monotonic() - self.reachable_since >= self.lease.total_seconds()
        if judge:
            items, chunks = release_lapsed(self.rt, now)
            self._send(items, chunks, "their worker died (claim lease lapsed)")
        if not messages_held(self.broker, self.queue):
            items, chunks = reserve_unsent(self.rt, now)
            self._send(items, chunks, "their messages were lost (a broker restarted empty, or a worker died before claiming them)")
        if not messages_held(self.broker, self.jobs_queue, taken=True) and retention_started(self.rt):
            log.warning("the retention schedule had no message left in the broker: sent again")
            self.senders.retention()
        if judge:  # last: it needs the object store, which may be the service that is down
            self._forget(*unforgotten(self.rt, now))

    def _sweep_is_mine(self) -> bool:
        client = getattr(self.broker, "client", None)
        if client is None:  # not Redis: a single process
            return True
        return bool(client.set(SWEEP_LOCK, uuid.uuid4().hex, nx=True, px=max(1, int(self.interval * 900))))

    def _forget(self, items: list[str], chunks: list[str]) -> None:
        from pipeline.documents import process  # imported at a worker's boot; `dmp ingest` of a feed does without it

        for item_id in items:
            process.forget_inbox(self.rt, item_id)
        for chunk_id in chunks:
            feeds.forget_inbox(self.rt, chunk_id)
        if items or chunks:
            log.warning("recovery: inbox copies of %d items and %d feed chunks deleted: their worker died before", len(items), len(chunks))

    def _send(self, items: list[str], chunks: list[str], why: str) -> None:
        for item_id in items:
            self.senders.item(item_id)
        for chunk_id in chunks:
            self.senders.chunk(chunk_id)
        if items or chunks:
            log.warning("recovery: %d items and %d feed chunks sent again: %s", len(items), len(chunks), why)
