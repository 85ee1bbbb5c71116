"""The actors: load ids, call the service function, wait out outages, let dramatiq retry the rest.

Nothing that reaches the broker carries patient data: messages hold ids (and an attempt number),
and every exception leaving an actor is re-raised as a `Transient` whose text is a code and ids,
with its cause suppressed, because dramatiq's Retries middleware stores the traceback in the message.

An outage (pipeline/core/outage.py) never leaves an actor: the work waits in place and tries again
until the service answers. After HOLD_SECONDS (under dramatiq's ten-minute time limit) the actor
lets its message go, sending a fresh copy of it; if the broker is what is down, the recovery
sweep (recovery.py) sends it again once the broker answers. Only other failures reach dramatiq's
retries (DMP_MAX_RETRIES).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import dramatiq

from pipeline.carehistory import feeds
from pipeline.core.logs import bound
from pipeline.core.outage import Interrupted, failure_code, outage_of, wait_out
from pipeline.core.reasons import Transient
from pipeline.runtime import Runtime
from pipeline.workers.recovery import Kind, WorkerState

log = logging.getLogger(__name__)
HOLD_SECONDS = 300.0
# A micro-batch's time limit (dramatiq's default is ten minutes a message): its 32 documents (PACK_DOCUMENTS) may
# each take the whole validation time (DMP_VALIDATION_TIMEOUT_SECONDS, 30 s: 16 min) besides an outage's hold.
BATCH_TIME_LIMIT_MS = 30 * 60 * 1000
Task = dramatiq.Actor[..., None]  # the actors return nothing: their work is in the index


@dataclass(frozen=True)
class Actors:
    process_document: Task
    admit_batch: Task
    process_feed_chunk: Task
    retention: Task
    retries_exhausted: Task
    process_documents: Task


def _guarded(work: Callable[[], object], ref: str, let_go: Callable[[], None]) -> None:
    """Run `work`; an outage it could not wait out lets the message go; anything else leaves as a
    Transient naming only a code and `ref` (an id), for dramatiq to retry."""
    try:
        work()
    except Exception as failure:
        if outage_of(failure) is not None:
            log.warning("%s: %s still unavailable after waiting; its message goes back to the queue", ref, failure_code(failure))
            let_go()
            return
        if isinstance(failure, Transient):
            raise Transient(f"{failure} {ref}") from None
        # Unexpected: counted as a crash (items: DMP_MAX_ATTEMPTS) and retried.
        log.error("%s: unexpected %s", ref, type(failure).__name__)
        raise Transient(f"unexpected:{type(failure).__name__} {ref}") from None


class _Resumable:
    """One message's work through outages: an interrupted attempt's number is handed to the next
    try (and to the copy sent when the message is let go), so taking the claim back is no crash.
    For a message of several items, the numbers by item id."""

    def __init__(self, rt: Runtime, state: WorkerState, run: Callable[[Any], object], resuming: Any) -> None:
        self.rt, self.state, self.run, self.resuming = rt, state, run, resuming

    def once(self) -> object:
        try:
            return self.run(self.resuming)
        except Interrupted as stop:
            self.resuming = stop.attempt
            raise

    def __call__(self) -> object:
        return wait_out(self.once, self.rt.settings, self.state.watch, self.state.stopping, HOLD_SECONDS)


def _send_or_leave(actor: Task, ref: str, *args: object) -> None:
    try:
        actor.send_with_options(args=args)
    except Exception as failure:
        if outage_of(failure) is None:
            raise
        log.warning("%s: the broker is unavailable too; the recovery sweep sends it again once it answers", ref)


def declare_actors(broker: dramatiq.Broker, queue: str, runtime: Callable[[], Runtime], state: WorkerState | None = None) -> Actors:
    """Declare the actors on `broker`; `runtime` gives the process's Runtime (built lazily once),
    `state` what the actors share with the process's recovery thread."""
    state = state or WorkerState()

    # The document pipeline (validation, PDF inspection: 0.15–0.3 s of imports) is imported by the actors that run it, not
    # here: `dmp ingest` of a feed declares these actors only to send its chunks. Worker processes import it at boot
    # (pipeline/workers/entry.py).
    def process_document(item_id: str, resuming: int | None = None) -> None:
        from pipeline.documents import process

        rt = runtime()
        work = _Resumable(rt, state, lambda attempt: process.process_item(rt, item_id, resuming=attempt), resuming)
        with state.holding(Kind.ITEM, item_id), bound(item_id=item_id):
            _guarded(work, f"item={item_id}", lambda: _send_or_leave(documents, f"item={item_id}", item_id, work.resuming))

    def process_documents(item_ids: list[str], resuming: dict[str, int] | None = None) -> None:
        """A micro-batch: the items of one intake pack (pipeline/documents/batching.py)."""
        from pipeline.documents.batching import process_items

        rt = runtime()
        work = _Resumable(rt, state, lambda attempts: process_items(rt, item_ids, resuming=attempts), resuming)
        ref = f"items={item_ids[0]}+{len(item_ids) - 1}"
        with ExitStack() as held:
            for item_id in item_ids:
                held.enter_context(state.holding(Kind.ITEM, item_id))
            _guarded(work, ref, lambda: _send_or_leave(many, ref, item_ids, work.resuming))

    def admit_batch(batch_id: str) -> None:
        from pipeline.documents import process

        rt = runtime()
        work = _Resumable(rt, state, lambda _: process.send_waiting_items(rt, batch_id, documents.send), None)
        with bound(batch_id=batch_id):
            _guarded(work, f"batch={batch_id}", lambda: _send_or_leave(admit, f"batch={batch_id}", batch_id))

    def process_feed_chunk(chunk_id: str, resuming: int | None = None) -> None:
        rt = runtime()
        work = _Resumable(rt, state, lambda attempt: feeds.process_chunk(rt, chunk_id, resuming=attempt), resuming)
        with state.holding(Kind.CHUNK, chunk_id), bound(chunk_id=chunk_id):
            _guarded(work, f"chunk={chunk_id}", lambda: _send_or_leave(chunks, f"chunk={chunk_id}", chunk_id, work.resuming))

    def retention() -> None:
        from pipeline.retention import scheduled_retention

        rt = runtime()
        later = lambda delay: retention_actor.send_with_options(delay=delay)  # noqa: E731
        work = _Resumable(rt, state, lambda _: scheduled_retention(rt, later), None)
        with bound(job="retention"):
            _guarded(work, "job=retention", lambda: _send_or_leave(retention_actor, "job=retention"))

    def retries_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
        from pipeline.documents import process

        if message.get("actor_name") not in ("dmp_process_document", "dmp_process_documents"):
            return  # chunks stay queued: re-sending the feed resumes them
        first = message["args"][0]
        for item_id in [first] if isinstance(first, str) else first:  # a micro-batch's: those not final end
            if process.mark_retries_exhausted(runtime(), item_id):
                log.warning("item %s: a failure that is not an outage outlived %s retries", item_id, retry_info.get("retries"))

    def declare(fn: Callable[..., None], name: str, *, queue_name: str = queue, **options: Any) -> Task:
        return dramatiq.actor(broker=broker, actor_name=name, queue_name=queue_name, **options)(fn)

    exhausted = declare(retries_exhausted, "dmp_retries_exhausted")
    documents = declare(process_document, "dmp_process_document", on_retry_exhausted="dmp_retries_exhausted")
    many = declare(process_documents, "dmp_process_documents", on_retry_exhausted="dmp_retries_exhausted", time_limit=BATCH_TIME_LIMIT_MS)
    admit = declare(admit_batch, "dmp_admit_batch")
    chunks = declare(process_feed_chunk, "dmp_process_feed_chunk", on_retry_exhausted="dmp_retries_exhausted")
    # Its own queue: the next run waits there for days, and recovery.py reads an empty document queue
    # as "every message of it is lost". A failed run re-sends itself (pipeline/retention.py).
    retention_actor = declare(retention, "dmp_retention", queue_name=jobs_queue(queue), max_retries=0)
    return Actors(documents, admit, chunks, retention_actor, exhausted, many)


def jobs_queue(queue: str) -> str:
    """The queue of scheduled jobs beside the document queue `queue`."""
    return f"{queue}.jobs"
