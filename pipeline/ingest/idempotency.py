"""`Idempotency-Key` on submissions: a retried request gets the first answer, and nothing is created twice.

The first request with a key claims it (a row with no answer yet and a lease), runs, then stores
its 202 answer; a retry with the same key gets that answer back without reading its body. A key
whose request is still running answers 409 (the client waits and retries); any failure of the
first request releases the key, so a retry runs for real. The lease is renewed while the request
runs, so a key left claimed by a dead API process is taken over once it runs out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipeline.index.models import IdempotencyRecord
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
LEASE_SECONDS = 60
RENEW_SECONDS = 15
MAX_KEY_CHARS = 255
# Rows are never loaded in the sessions that update them; and SQLite hands back naive datetimes.
_NO_SYNC = {"synchronize_session": False}


class KeyInvalid(ValueError):
    """Not 1 to 255 printable ASCII characters."""


class KeyInUse(Exception):
    """The first request with this key is still running."""


class KeyReused(Exception):
    """The key was first used for another route or another body (its length differs)."""


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_key(header: str) -> str:
    """The key from the header (an RFC 8941 string: quotes are optional), or KeyInvalid."""
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise KeyInvalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def claim(session: Session, source: str, key: str, route: str, content_length: int | None) -> Replay | None:
    """The stored first answer for (source, key), or None when the key is now this request's to use.

    Raises KeyInUse while the first request runs, KeyReused if the key served another submission.
    """
    now = _now()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    values = {"source": source, "key": key, "route": route, "content_length": content_length, "lease_until": now + _lease()}
    # RETURNING, not rowcount: psycopg reports -1 for an ORM-run INSERT … ON CONFLICT.
    statement = dialect.insert(IdempotencyRecord).values(**values).on_conflict_do_nothing().returning(IdempotencyRecord.key)
    inserted = session.execute(statement).first() is not None
    session.commit()
    if inserted:
        return None
    row = session.get(IdempotencyRecord, (source, key), populate_existing=True)
    if row is None:  # released between our insert and this read: simply try again
        return claim(session, source, key, route, content_length)
    if row.route != route or (content_length is not None and row.content_length is not None and row.content_length != content_length):
        raise KeyReused(key)
    if row.status is not None:
        return Replay(row.status, json.loads(row.body or "{}"))
    # A running first request, unless its lease ran out (its API process died): then take it over.
    take_over = (
        update(IdempotencyRecord)
        .where(IdempotencyRecord.source == source, IdempotencyRecord.key == key)
        .where(IdempotencyRecord.status.is_(None), IdempotencyRecord.lease_until < now)
        .values(lease_until=now + _lease(), content_length=content_length)
        .execution_options(synchronize_session=False)
    )
    taken = cast(CursorResult[Any], session.execute(take_over)).rowcount  # an UPDATE's result is a cursor's
    session.commit()
    if not taken:
        raise KeyInUse(key)
    return None


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=LEASE_SECONDS)


def _pending(source: str, key: str) -> tuple[ColumnElement[bool], ...]:
    return (IdempotencyRecord.source == source, IdempotencyRecord.key == key, IdempotencyRecord.status.is_(None))


def finish(session: Session, source: str, key: str, status: int, body: dict[str, Any]) -> None:
    """Keep the answer: every retry with this key gets it."""
    values = {"status": status, "body": json.dumps(body), "lease_until": None}
    session.execute(update(IdempotencyRecord).where(*_pending(source, key)).values(**values), execution_options=_NO_SYNC)
    session.commit()


def release(session: Session, source: str, key: str) -> None:
    """The request failed: forget the key so a retry runs for real."""
    session.execute(delete(IdempotencyRecord).where(*_pending(source, key)), execution_options=_NO_SYNC)
    session.commit()


@contextmanager
def renewing(rt: Runtime, source: str, key: str) -> Iterator[None]:
    """Renew the key's lease every RENEW_SECONDS while the request runs (a background thread)."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_SECONDS):
            try:
                with rt.sessions() as session:
                    renewed = update(IdempotencyRecord).where(*_pending(source, key)).values(lease_until=_now() + _lease())
                    session.execute(renewed, execution_options=_NO_SYNC)
                    session.commit()
            except Exception as failure:  # the index is away: the next renewal may succeed; never kill the request
                log.warning("idempotency lease renewal failed: %s", type(failure).__name__)

    thread = threading.Thread(target=renew, name="dmp-idempotency-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
