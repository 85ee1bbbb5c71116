"""Record keys: one AES-256 key per patient record, wrapped by a master key, kept in the index.

Every document's data key is wrapped by its record's key, so destroying one record key makes
the whole record unreadable at once (crypto-shredding), and rotating a master key re-wraps one
small key per patient, never the objects. Unwrapped record keys are cached briefly per process.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Row, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from pipeline.core.keys import KeyProvider, KeyProviderError, WrappedKey, new_key
from pipeline.index.base import new_id, table_of
from pipeline.index.models import Batch, BatchItem, Contact, RecordKey
from pipeline.index.repo import RowValues, among, insert_ignore

CACHE_SECONDS = 300.0


def record_context(record_key_id: str, patient_id: str) -> str:
    return f"record:{record_key_id}|patient:{patient_id}"


@dataclass(frozen=True)
class OpenRecordKey:
    id: str
    key: bytes


@dataclass(frozen=True)
class _KeyRow:
    id: str
    patient_id: str
    master_key_id: str | None
    wrapped: bytes | None


class RecordKeys:
    def __init__(self, sessions: sessionmaker[Session], provider: KeyProvider, cache_seconds: float = CACHE_SECONDS) -> None:
        self.sessions = sessions
        self.provider = provider
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, OpenRecordKey]] = {}
        self._lock = threading.Lock()

    def for_patient(self, patient_id: str) -> OpenRecordKey:
        """The patient's record key, created (and wrapped by the active master key) on first use."""
        with self.sessions() as session:
            row = session.scalars(select(RecordKey).where(RecordKey.patient_id == patient_id)).one_or_none()
            if row is None:
                insert_ignore(session, RecordKey, self.new_row(patient_id)[0])  # a concurrent worker may have won: use its key
                session.commit()
                row = session.scalars(select(RecordKey).where(RecordKey.patient_id == patient_id)).one()
        return (self.cached(row.id) if row.wrapped is not None else None) or self._open(row)

    def get(self, record_key_id: str) -> OpenRecordKey:
        """An existing record key by id; KeyProviderError if it was destroyed."""
        cached = self.cached(record_key_id)
        if cached is not None:
            return cached
        with self.sessions() as session:
            row = session.get(RecordKey, record_key_id)
        if row is None:
            raise KeyProviderError(f"record key {record_key_id} does not exist")
        return self._open(row)

    def find(self, session: Session, patient_id: str) -> OpenRecordKey | None:
        """The patient's record key read in the caller's `session`, or None if the patient has none
        (never created, or destroyed). Creates nothing, so it is safe inside a writing transaction."""
        row = session.scalars(select(RecordKey).where(RecordKey.patient_id == patient_id)).one_or_none()
        if row is None or row.wrapped is None:
            return None
        return self.cached(row.id) or self._open(row)

    def for_patients(self, session: Session, patient_ids: Collection[str]) -> dict[str, bytes]:
        """The record keys of many patients by patient id, made for those who have none, in the caller's
        transaction (the feed's bulk writes: one query and one bulk insert, not a transaction per patient).
        A destroyed key is left out."""
        return {patient_id: opened.key for patient_id, opened in self.open_for_patients(session, patient_ids).items()}

    def open_for_patients(self, session: Session, patient_ids: Collection[str]) -> dict[str, OpenRecordKey]:
        """`for_patients` with each key's id (a worker's micro-batch seals documents under them)."""
        columns = (RecordKey.id, RecordKey.patient_id, RecordKey.master_key_id, RecordKey.wrapped)
        wanted = set(patient_ids)
        rows = list(session.execute(select(*columns).where(among(session, RecordKey.patient_id, wanted)))) if wanted else []
        made: dict[str, tuple[RowValues, bytes]] = {}
        missing = wanted - {row.patient_id for row in rows}
        if missing:
            made = {patient_id: self.new_row(patient_id) for patient_id in sorted(missing)}
            insert_ignore(session, table_of(RecordKey), [values for values, _ in made.values()])  # the first key made wins
            rows += session.execute(select(*columns).where(among(session, RecordKey.patient_id, missing)))
        keys: dict[str, OpenRecordKey] = {}
        for row in rows:
            if row.wrapped is None:
                continue
            values, key = made.get(row.patient_id, ({}, b""))
            # A key made here is used as is (not cached: this transaction may yet roll back); others are opened.
            keys[row.patient_id] = OpenRecordKey(row.id, key) if values.get("id") == row.id else (self.cached(row.id) or self._open(row))
        return keys

    def opened(self, record_key_id: str, patient_id: str, master_key_id: str | None, wrapped: bytes | None) -> OpenRecordKey:
        """A record key from its row's values as read by the caller (KeyProviderError if destroyed, even if this
        process still holds it: the caller's row is newer than the cache)."""
        row = _KeyRow(record_key_id, patient_id, master_key_id, wrapped)
        return (self.cached(record_key_id) if wrapped is not None else None) or self._open(row)

    def new_row(self, patient_id: str) -> tuple[RowValues, bytes]:
        """A new record key's row (a fresh key wrapped by the active master key, bound to its ids) and the key."""
        key_id, key = new_id(), new_key()
        wrapped = self.provider.wrap(key, record_context(key_id, patient_id))
        return {"id": key_id, "patient_id": patient_id, "master_key_id": wrapped.key_id, "wrapped": wrapped.blob}, key

    def cached(self, record_key_id: str) -> OpenRecordKey | None:
        """The record key if this process holds it unwrapped (opened within `cache_seconds`), else None: no round trip."""
        with self._lock:
            cached = self._cache.get(record_key_id)
        return cached[1] if cached and cached[0] > time.monotonic() else None

    def _open(self, row: RecordKey | Row[str, str, str | None, bytes | None] | _KeyRow) -> OpenRecordKey:
        if row.wrapped is None or row.master_key_id is None:
            raise KeyProviderError(f"record key {row.id} was destroyed")
        key = self.provider.unwrap(WrappedKey(row.master_key_id, row.wrapped), record_context(row.id, row.patient_id))
        opened = OpenRecordKey(row.id, key)
        with self._lock:
            self._cache[row.id] = (time.monotonic() + self.cache_seconds, opened)
        return opened

    def destroy(self, patient_id: str) -> str | None:
        """Destroy the patient's record key: every document of the record becomes unreadable."""
        with self.sessions() as session:
            row = session.scalars(select(RecordKey).where(RecordKey.patient_id == patient_id)).one_or_none()
            if row is None:
                return None
            row.wrapped, row.master_key_id, row.destroyed_at = None, None, dt.datetime.now(dt.UTC)
            session.commit()
        with self._lock:
            self._cache.pop(row.id, None)
        return row.id

    def pending_rewrap(self) -> int:
        """Record keys still wrapped by a master key other than the active one."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(RecordKey).where(*self._stale())) or 0

    def _stale(self) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        return (RecordKey.wrapped.is_not(None), RecordKey.master_key_id != self.provider.active_id)

    def rewrap(self, batch_size: int = 200, on_progress: Callable[[int], None] | None = None) -> int:
        """Re-wrap every record key under the active master key, in short transactions.

        Resumable (it only picks keys not yet under the active key) and safe while reads and
        ingestion go on: each row changes key id and wrapped bytes together, and the old
        master key stays available for unwrapping until every row has moved.
        """
        done = 0
        while True:
            with self.sessions() as session:
                rows = session.scalars(select(RecordKey).where(*self._stale()).limit(batch_size)).all()
                if not rows:
                    return done
                for row in rows:
                    old = WrappedKey(row.master_key_id or "", row.wrapped or b"")
                    context = record_context(row.id, row.patient_id)
                    _rewrap_row(session, self.provider, RecordKey, ("master_key_id", "wrapped"), row.id, old, context)
                session.commit()
            done += len(rows)
            if on_progress:
                on_progress(len(rows))


def _rewrap_row(
    session: Session,
    provider: KeyProvider,
    model: type[RecordKey] | type[Batch] | type[Contact] | type[BatchItem],
    columns: tuple[str, str],
    row_id: str,
    old: WrappedKey,
    context: str,
) -> None:
    """Re-wrap one row's key under the active master key (`columns`: the master key id's, the wrapped bytes')."""
    wrapped = provider.wrap(provider.unwrap(old, context), context)
    key_id, blob = columns
    # Only if nobody changed the row meanwhile (a destroy, another rotation).
    session.execute(
        update(model).where(model.id == row_id, getattr(model, key_id) == old.key_id).values({key_id: wrapped.key_id, blob: wrapped.blob})
    )


def rewrap_direct_keys(
    sessions: sessionmaker[Session],
    provider: KeyProvider,
    model: type[Batch] | type[Contact] | type[BatchItem],
    context: Callable[[str], str],
    batch_size: int = 200,
    columns: tuple[str, str] = ("master_key_id", "wrapped_key"),
) -> int:
    """Re-wrap the keys a master key wraps directly in `model`'s rows (`columns`: the master key id's and the
    wrapped key's; batch keys, professionals' contact keys, quarantine copies' keys) under the active master
    key, in short transactions.

    Resumable and safe while the rows are used, as `RecordKeys.rewrap`: a row changes only if
    nobody re-keyed it meanwhile. `context(row id)` is the context the key was wrapped in.
    """
    key_id, blob = getattr(model, columns[0]), getattr(model, columns[1])
    stale = (blob.is_not(None), key_id != provider.active_id)
    done = 0
    while True:
        with sessions() as session:
            rows = session.execute(select(model.id, key_id, blob).where(*stale).limit(batch_size)).all()
            for row_id, master_key_id, wrapped_key in rows:
                _rewrap_row(session, provider, model, columns, row_id, WrappedKey(master_key_id, wrapped_key), context(row_id))
            session.commit()
        done += len(rows)
        if len(rows) < batch_size:
            return done
