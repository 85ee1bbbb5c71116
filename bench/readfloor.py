"""The content read's floor: the same work as `GET /v1/patients/{p}/documents/{d}/content`, with the least machinery.

Per read, in this process, one after another: the judging statement (the record, the document, the record's audit
chain lock tried and its head read) and the audit entry's insert (hashed, appended only if the lock is free), the
product's own statements compiled once and sent through psycopg on one autocommit connection; the object's GET on a
presigned URL (the store's own GET); decryption and the keyed-hash check. Left out: HTTP, the token's check, the
policy's decision (microseconds of pure Python on values the statement returned), the framework, the ORM and the
pool. What the API adds to the same work is what `value / floor` measures.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import psycopg

from pipeline.access.audit import GENESIS, INSERT_IF_FREE, AuditEvent, chain_lock_params, entry_values
from pipeline.access.policy import Action, ActorKind, Reason
from pipeline.access.recordview import record_statement
from pipeline.documents.stored import SealedDocument
from pipeline.index.models import Document
from pipeline.index.recordkeys import OpenRecordKey
from pipeline.runtime import Runtime

# Appends tried per read (`ContentFloor.read`), waiting a little longer after each.
TRIES = 100
BACKOFF_SECONDS = 0.0001


@dataclass(frozen=True)
class FloorRead:
    """One document to read: its sealed values and its record key (held unwrapped, as the API's cache does)."""

    document: SealedDocument
    record: OpenRecordKey


def floor_read(rt: Runtime, document: Document) -> FloorRead:
    """What the floor reads of `document`, its record key opened beforehand."""
    return FloorRead(SealedDocument.of(document), rt.record_keys.get(document.record_key_id))


class ContentFloor:
    """The floor's reads on one autocommit psycopg connection to the index (`database_url`, SQLAlchemy's or libpq's)."""

    def __init__(self, rt: Runtime, database_url: str) -> None:
        self._rt = rt
        dialect = rt.engine.dialect
        statement = record_statement(lock_chain=True, for_actor=True, with_document=True)
        judge = statement.compile(dialect=dialect)
        self._judge_sql, self._judge_defaults = str(judge), judge.params  # the statement's own values (a LIMIT's)
        self._insert_sql = str(INSERT_IF_FREE.compile(dialect=dialect))
        self._connection = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self._audit_key = rt.audit_key
        names = [column.name for column in statement.selected_columns]
        self._locked, self._seq, self._hash = (names.index(name) for name in ("head_locked", "head_seq", "head_hash"))
        self._wrapped = names.index("wrapped_key")

    def read(self, target: FloorRead) -> bytes:
        """Judge, audit, then GET, decrypt and verify one document, as its patient. An append that met another (its
        chain's lock held, or its head gone stale: in flight at once, two reads of one record) is tried again."""
        for attempt in range(TRIES):
            if self._judged_and_audited(target.document):
                return target.document.whole(self._rt, target.record)
            time.sleep(BACKOFF_SECONDS * attempt)  # the other append commits within a round trip or two
        raise RuntimeError(f"the floor's audit entry did not go in after {TRIES} tries")

    def _judged_and_audited(self, document: SealedDocument) -> bool:
        lock = chain_lock_params(document.patient_id)
        params = {"patient_id": document.patient_id, "actor_id": document.patient_id, "document_id": document.id}
        row = self._connection.execute(self._judge_sql, self._judge_defaults | params | lock).fetchone()
        if row is None or row[self._wrapped] is None:
            raise RuntimeError("the floor's document is gone")
        if not row[self._locked]:
            return False
        seq, prev = (row[self._seq], row[self._hash]) if row[self._seq] is not None else (0, GENESIS)
        event = AuditEvent(chain=document.patient_id, actor_id=document.patient_id, actor_kind=ActorKind.PATIENT, profession=None,
                           action=Action.READ_CONTENT, document_id=document.id, outcome="allowed", reason=Reason.PATIENT)  # fmt: skip
        values = entry_values(self._audit_key, event, dt.datetime.now(dt.UTC), seq + 1, prev, None)  # as append_at_once
        try:
            inserted = self._connection.execute(self._insert_sql, values | lock).fetchone()
        except psycopg.errors.UniqueViolation:
            return False
        return inserted is not None

    def close(self) -> None:
        self._connection.close()
