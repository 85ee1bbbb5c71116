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
from pipeline.workers import process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actors:
    process_document: dramatiq.Actor
    retries_exhausted: dramatiq.Actor


def declare_actors(broker: dramatiq.Broker, queue: str, runtime: Callable[[], Runtime]) -> Actors:
    """Declare the actors on `broker`; `runtime` gives the process's Runtime (built lazily once)."""

    def process_document(item_id: str) -> None:
        rt = runtime()
        try:
            process.process_item(rt, item_id)
        except Transient as failure:
            _back_to_queue(rt, item_id)
            raise Transient(f"{failure} item={item_id}") from None
        except DBAPIError as failure:
            raise Transient(f"database_unavailable:{type(failure.orig).__name__} item={item_id}") from None
        except Exception as failure:
            # Unexpected: leave the item "processing" so the next start counts a crash.
            log.error("item %s: unexpected %s", item_id, type(failure).__name__)
            raise Transient(f"unexpected:{type(failure).__name__} item={item_id}") from None

    def retries_exhausted(message: dict, retry_info: dict) -> None:
        (item_id,) = message["args"]
        log.warning("item %s: transient failures outlived %s retries", item_id, retry_info.get("retries"))
        process.mark_retries_exhausted(runtime(), item_id)

    exhausted = dramatiq.actor(retries_exhausted, broker=broker, actor_name="dmp_retries_exhausted", queue_name=queue)
    main = dramatiq.actor(
        process_document,
        broker=broker,
        actor_name="dmp_process_document",
        queue_name=queue,
        on_retry_exhausted="dmp_retries_exhausted",
    )
    return Actors(main, exhausted)


def _back_to_queue(rt: Runtime, item_id: str) -> None:
    """A clean transient failure is not a crash: put the item back to queued when the index answers."""
    from pipeline.index import repo

    try:
        with rt.sessions() as session:
            repo.requeue_for_retry(session, item_id)
    except DBAPIError:
        pass
