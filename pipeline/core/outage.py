"""Outages: telling them from failures, and waiting them out where the work is.

An outage (the index, the object store, the broker or the key service not answering) is not the
document's fault. Work that meets one keeps its message and waits in place, trying again with
exponential backoff and full jitter (DMP_MIN_BACKOFF_MS doubling up to DMP_MAX_BACKOFF_MS) until
the service answers, however long that takes: it spends none of the retries meant for other
failures, never rejects a document, and the messages behind it stay in the queue. The load on a
service that is down is thus one try per busy worker thread per backoff, whatever the queue
holds. Each process says once that a service is down, every minute that it still is, and once
that it answers again.

The PostgreSQL pool checks a connection that idled for a second or more before handing it out
(pipeline/index/db.py), so the first try after an outage does not fail on a connection the server
closed meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

import redis
from dramatiq.errors import BrokerConnectionError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, stop_when_event_set, wait_random_exponential

from pipeline.core.reasons import Transient
from pipeline.core.settings import Settings

log = logging.getLogger(__name__)
STILL_DOWN_EVERY = 60.0  # seconds between two "still unavailable" lines of a process


class Service(StrEnum):
    DATABASE = "database"
    STORAGE = "storage"
    BROKER = "broker"
    KEYS = "keys"


# Transient codes (pipeline.core.reasons.Transient) that name a service that did not answer.
_CODE_PREFIXES = {"database_": Service.DATABASE, "storage_": Service.STORAGE, "broker_": Service.BROKER, "kms_": Service.KEYS}


class Interrupted(Exception):
    """An outage stopped an attempt after it claimed its work: `attempt` may still hold the claim,
    and the next try of the same message takes it back without counting a crash. A message of
    several items (a micro-batch) holds one attempt per item: `attempt` maps item ids to them."""

    def __init__(self, service: Service, code: str, attempt: int | dict[str, int]) -> None:
        super().__init__(f"{service}_unavailable:{code} attempt={attempt}")
        self.service, self.code, self.attempt = service, code, attempt


def outage_of(failure: BaseException) -> Service | None:
    """The service `failure` says is unavailable, or None when it is not an outage."""
    if isinstance(failure, Interrupted):
        return failure.service
    if isinstance(failure, OperationalError | InterfaceError | PoolTimeout):
        return Service.DATABASE
    if isinstance(failure, DBAPIError) and failure.connection_invalidated:
        return Service.DATABASE
    if isinstance(failure, BrokerConnectionError | redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return Service.BROKER
    if isinstance(failure, Transient):
        code = str(failure)
        return next((service for prefix, service in _CODE_PREFIXES.items() if code.startswith(prefix)), None)
    return None


def failure_code(failure: BaseException) -> str:
    """What to log about a failure: a code, never its text (a driver's message can quote row values)."""
    if isinstance(failure, Interrupted):
        return failure.code
    if isinstance(failure, Transient):
        return str(failure).split(" ", 1)[0]
    if isinstance(failure, DBAPIError) and failure.orig is not None:
        return type(failure.orig).__name__
    return type(failure).__name__


class OutageWatch:
    """What this process knows of services that are down, to tell the operator once, not per try."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[Service, tuple[float, float]] = {}  # service -> (since, last said)

    def failed(self, service: Service, code: str) -> None:
        now = time.monotonic()
        with self._lock:
            since, said = self._down.get(service, (now, 0.0))
            if said and now - said < STILL_DOWN_EVERY:
                return
            self._down[service] = (since, now)
        if not said:
            log.warning("%s unavailable (%s): work waits for it and resumes by itself; no document is rejected for it", service, code)
        else:
            log.warning("%s still unavailable after %.0f s (%s): work waits", service, now - since, code)

    def answered(self, service: Service) -> None:
        with self._lock:
            since = self._down.pop(service, None)
        if since is not None:
            log.warning("%s answers again after %.0f s: work resumes", service, time.monotonic() - since[0])

    def down(self) -> list[Service]:
        with self._lock:
            return list(self._down)


def waiting(settings: Settings, watch: OutageWatch, stopping: threading.Event, hold: float) -> Retrying:
    """Retrying that waits out outages (and only them) for at most `hold` seconds, or until `stopping`.

    The last failure is re-raised when the wait ends without the service answering.
    """

    def note(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        if failure is not None:  # before_sleep runs after a failed attempt: there is one
            watch.failed(outage_of(failure) or Service.DATABASE, failure_code(failure))

    def sleep(seconds: float) -> None:
        stopping.wait(seconds)  # a stop request ends the wait at once

    return Retrying(
        retry=retry_if_exception(lambda failure: outage_of(failure) is not None),
        wait=wait_random_exponential(multiplier=settings.min_backoff_ms / 1000, max=settings.max_backoff_ms / 1000),
        stop=stop_after_delay(hold) | stop_when_event_set(stopping),
        sleep=sleep,
        before_sleep=note,
        reraise=True,
    )


def wait_out(work: Callable[[], object], settings: Settings, watch: OutageWatch, stopping: threading.Event, hold: float) -> object:
    """Run `work`, trying again in place through outages (see `waiting`); once it goes through, the
    services it waited for are known to answer again."""
    waited: set[Service] = set()
    for attempt in waiting(settings, watch, stopping, hold):
        with attempt:
            result = work()
        outcome = attempt.retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        if failure is not None:
            waited.add(outage_of(failure) or Service.DATABASE)
    for service in waited:
        watch.answered(service)
    return result
