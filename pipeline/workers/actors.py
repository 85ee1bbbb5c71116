"""The actors: load ids, call the service function, let dramatiq retry transient failures.

Nothing that reaches the broker carries patient data: messages hold ids, and every exception
leaving an actor is re-raised as a `Transient` whose text is a code and ids, with its cause
suppressed, because dramatiq's Retries middleware stores the traceback in the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from sqlalchemy.exc import DBAPIError

from pipeline.reasons import Transient
from pipeline.runtime import Runtime
from pipeline.workers import feeds, process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actors:
    process_document: dramatiq.Actor
    admit_batch: dramatiq.Actor
    process_feed_chunk: dramatiq.Actor
    retention: dramatiq.Actor
    retries_exhausted: dramatiq.Actor


def _guarded(rt: Runtime, work: Callable[[], object], ref: str, on_transient: Callable[[], None] | None = None) -> None:
    """Run `work`; whatever escapes leaves as a Transient naming only a code and `ref` (an id)."""
    try:
        work()
    except Transient as failure:
        if on_transient:
            on_transient()
        raise Transient(f"{failure} {ref}") from None
    except DBAPIError as failure:
        raise Transient(f"database_unavailable:{type(failure.orig).__name__} {ref}") from None
    except Exception as failure:
        # Unexpected: the next start counts it as a crash (items) or simply retries (chunks).
        log.error("%s: unexpected %s", ref, type(failure).__name__)
        raise Transient(f"unexpected:{type(failure).__name__} {ref}") from None


def declare_actors(broker: dramatiq.Broker, queue: str, runtime: Callable[[], Runtime]) -> Actors:
    """Declare the actors on `broker`; `runtime` gives the process's Runtime (built lazily once)."""

    def process_document(item_id: str) -> None:
        rt = runtime()
        _guarded(rt, lambda: process.process_item(rt, item_id), f"item={item_id}", lambda: _back_to_queue(rt, item_id))

    def admit_batch(batch_id: str) -> None:
        rt = runtime()
        _guarded(rt, lambda: process.send_waiting_items(rt, batch_id, documents.send), f"batch={batch_id}")

    def process_feed_chunk(chunk_id: str) -> None:
        rt = runtime()
        _guarded(rt, lambda: feeds.process_chunk(rt, chunk_id), f"chunk={chunk_id}")

    def retention() -> None:
        from pipeline.retention import scheduled_retention

        rt = runtime()
        _guarded(rt, lambda: scheduled_retention(rt, lambda delay: retention_actor.send_with_options(delay=delay)), "job=retention")

    def retries_exhausted(message: dict, retry_info: dict) -> None:
        if message.get("actor_name") != "dmp_process_document":
            return  # chunks stay queued: re-sending the feed resumes them
        (item_id,) = message["args"]
        log.warning("item %s: transient failures outlived %s retries", item_id, retry_info.get("retries"))
        process.mark_retries_exhausted(runtime(), item_id)

    def declare(fn: Callable, name: str, **options: object) -> dramatiq.Actor:
        return dramatiq.actor(fn, broker=broker, actor_name=name, queue_name=queue, **options)

    exhausted = declare(retries_exhausted, "dmp_retries_exhausted")
    documents = declare(process_document, "dmp_process_document", on_retry_exhausted="dmp_retries_exhausted")
    admit = declare(admit_batch, "dmp_admit_batch")
    chunks = declare(process_feed_chunk, "dmp_process_feed_chunk", on_retry_exhausted="dmp_retries_exhausted")
    retention_actor = declare(retention, "dmp_retention", max_retries=3)
    return Actors(documents, admit, chunks, retention_actor, exhausted)


def _back_to_queue(rt: Runtime, item_id: str) -> None:
    """A clean transient failure is not a crash: put the item back to queued when the index answers."""
    from pipeline.index import repo

    try:
        with rt.sessions() as session:
            repo.requeue_for_retry(session, item_id)
    except DBAPIError:
        pass
