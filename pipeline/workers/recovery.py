"""Unfinished work comes back by itself: claims held under a lease, and a sweep driven by the index.

Why the index and not the broker: the index knows what is unfinished whatever the broker kept.
dramatiq's Redis broker gives a dead worker's messages back only once its heartbeat is
DMP_BROKER_HEARTBEAT_TIMEOUT_MS old *and* a maintenance pass happens to run (a chance per
command), and a Redis restarted without persistence has lost every message. Claims are
idempotent, so sending a message twice is harmless: one for a final item does nothing, one for an
item that a live attempt holds is dropped (repo.claim_item).

Every `dmp worker` process runs one `Recovery` thread which, every third of
DMP_CLAIM_LEASE_SECONDS:

1. renews the lease of the items and feed chunks its actors hold (one UPDATE per table);
2. finds claims whose lease lapsed, whose worker therefore died: puts them back to `queued`
   (counting a crash for an item) and sends them again. This thread must have reached the index
   for a whole lease first, so that leases which lapsed while the index was down are renewed by
   their live workers before anyone judges them;
3. when the broker holds no message at all for the queue, sends again every `queued` item and
   chunk of a batch or feed whose intake had finished sending (`sent_at`): the broker lost them;
4. when it holds none for the jobs queue while the retention schedule was started, sends it again.

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
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import or_, select, update

from pipeline.index.models import Batch, BatchItem, Feed, FeedChunk, JobRun
from pipeline.outage import OutageWatch, failure_code, outage_of
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
    """Extend the leases of the claims this process holds."""
    with rt.sessions() as session:
        if items:
            session.execute(update(BatchItem).where(BatchItem.id.in_(items), BatchItem.state == "processing").values(lease_until=until))
        if chunks:
            session.execute(update(FeedChunk).where(FeedChunk.id.in_(chunks), FeedChunk.state == "processing").values(lease_until=until))
        session.commit()


def release_lapsed(rt: Runtime, now: dt.datetime, limit: int = BATCH_LIMIT) -> tuple[list[str], list[str]]:
    """Put back to `queued` the items and chunks whose claim's lease lapsed (a crash for an item);
    returns their ids, to be sent again."""
    released: list[list[str]] = []
    with rt.sessions() as session:
        for model, crash in ((BatchItem, {"crashes": BatchItem.crashes + 1}), (FeedChunk, {})):
            lapsed = (model.state == "processing", or_(model.lease_until.is_(None), model.lease_until < now))
            ids = list(session.scalars(select(model.id).where(*lapsed).limit(limit)))
            if ids:  # the conditions again: a claim renewed or taken over meanwhile keeps its lease
                statement = update(model).where(model.id.in_(ids), *lapsed).values(state="queued", lease_until=None, **crash)
                ids = list(session.scalars(statement.returning(model.id)))
            released.append(ids)
        session.commit()
    return released[0], released[1]


def unsent(rt: Runtime, now: dt.datetime, limit: int = BATCH_LIMIT) -> tuple[list[str], list[str]]:
    """Items and chunks waiting `queued` in batches and feeds whose intake had sent every message
    at least a lease ago: when the broker holds no message, theirs were lost."""
    settled = now - dt.timedelta(seconds=rt.settings.claim_lease_seconds)
    with rt.sessions() as session:
        items = session.scalars(
            select(BatchItem.id)
            .join(Batch, Batch.id == BatchItem.batch_id)
            .where(BatchItem.state == "queued", Batch.sent_at.is_not(None), Batch.sent_at < settled)
            .limit(limit)
        )
        chunks = session.scalars(
            select(FeedChunk.id)
            .join(Feed, Feed.id == FeedChunk.feed_id)
            .where(FeedChunk.state == "queued", Feed.sent_at.is_not(None), Feed.sent_at < settled)
            .limit(limit)
        )
        return list(items), list(chunks)


def retention_started(rt: Runtime) -> bool:
    """Whether `dmp retention schedule` ever ran here (a scheduled run was recorded)."""
    with rt.sessions() as session:
        return session.scalar(select(JobRun.id).where(JobRun.job == "retention").limit(1)) is not None


def broker_idle(broker: dramatiq.Broker, queue: str) -> bool:
    """Whether the broker holds no message for `queue`: none waiting, delayed or being worked on."""
    try:
        broker.join(queue, interval=200, timeout=100)  # one look: a busy queue times out at once
    except QueueJoinTimeout:
        return False
    return True


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
                self.reachable_since = None
                if outage_of(failure) is None:
                    log.error("recovery pass failed: %s", failure_code(failure))

    def run_once(self) -> None:
        """One pass: renew this process's leases; then, if no other process sweeps now, sweep."""
        now = dt.datetime.now(dt.UTC)
        renew_leases(self.rt, self.state.held(Kind.ITEM), self.state.held(Kind.CHUNK), now + self.lease)
        if self.reachable_since is None:
            self.reachable_since = time.monotonic()
        if not self._sweep_is_mine():
            return
        if time.monotonic() - self.reachable_since >= self.lease.total_seconds():
            items, chunks = release_lapsed(self.rt, now)
            self._send(items, chunks, "their worker died (claim lease lapsed)")
        if broker_idle(self.broker, self.queue):
            items, chunks = unsent(self.rt, now)
            self._send(items, chunks, "the broker had lost their messages")
        if broker_idle(self.broker, self.jobs_queue) and retention_started(self.rt):
            log.warning("the retention schedule had no message left in the broker: sent again")
            self.senders.retention()

    def _sweep_is_mine(self) -> bool:
        client = getattr(self.broker, "client", None)
        if client is None:  # not Redis: a single process
            return True
        return bool(client.set(SWEEP_LOCK, uuid.uuid4().hex, nx=True, px=max(1, int(self.interval * 900))))

    def _send(self, items: list[str], chunks: list[str], why: str) -> None:
        for item_id in items:
            self.senders.item(item_id)
        for chunk_id in chunks:
            self.senders.chunk(chunk_id)
        if items or chunks:
            log.warning("recovery: %d items and %d feed chunks sent again: %s", len(items), len(chunks), why)
