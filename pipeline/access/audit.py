"""The access log: every access attempt, allowed or denied, appended to a per-patient hash chain.

Each entry holds `prev_hash` (the previous entry's `entry_hash` in the same chain, 64 zeros for the
first) and `entry_hash`, an HMAC-SHA-256 under a key derived from the keyed-hash secret over a
canonical encoding of every field of the entry, including `seq` and `prev_hash`. The encoding has a
version, stored with each entry (`version`): version 2 adds what the actor was told when it differs
from the reason (`told_reason`) and the break-glass justification as sealed (`justification_sealed`);
entries written under version 1 keep verifying under version 1. Because the hash is keyed, someone
with write access to the database alone cannot rebuild a valid chain after editing, inserting or
deleting a row. (Dropping the newest entries of a chain leaves a valid shorter chain:
detecting that needs the chain heads anchored outside the database.)

The justification is medical content ("arrêt cardiaque, patient inconscient"): it is kept sealed under
the patient's record key, bound to its entry (pipeline/core/sealedfields.py), and the hash covers the sealed
bytes, not the text. So verifying needs no record key, and the chain of a destroyed record still
verifies while its justifications open no more. Entries with no record key to seal under (the "-"
chain, a destroyed record) keep no justification: nobody could ever read it there.

Chains are per patient (`chain` = patient id, or "-" when no patient is known), so appends for
different patients never contend, and a patient's chain can be read and verified on its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BigInteger, ColumnElement, Executable, Row, Select, String, Table, bindparam, func, insert, select, text, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased, sessionmaker

from pipeline.access.auditchain import (
    CURRENT_VERSION,
    GENESIS,
    MAX_JUSTIFICATION,
    NO_PATIENT,
    OUTCOMES,
    AuditEvent,
    BrokenLink,
    canonical_encoding,
    check_event,
    keyed,
    verify,
)
from pipeline.access.auditread import MAX_PAGE, entries_for, open_justifications
from pipeline.core.clock import as_utc
from pipeline.core.metrics import audit_appends
from pipeline.core.sealedfields import justification_context, seal_text
from pipeline.index import direct
from pipeline.index.db import transact
from pipeline.index.models import AuditEntry

log = logging.getLogger(__name__)
# What an entry is and how chains are checked live in pipeline/access/auditchain.py, reading chains back in
# pipeline/access/auditread.py; their names are also this module's.
__all__ = [
    "GENESIS",
    "MAX_JUSTIFICATION",
    "MAX_PAGE",
    "NO_PATIENT",
    "OUTCOMES",
    "AuditEvent",
    "BrokenLink",
    "canonical_encoding",
    "entries_for",
    "open_justifications",
    "verify",
]


def _chain_lock_id(chain: str) -> int:
    """A signed 64-bit advisory lock id for a chain (a collision only serialises two chains' appends)."""
    digest = hashlib.sha256(b"dmp-audit-chain\0" + chain.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# The PostgreSQL expressions that take a chain's append lock until the transaction ends, its lock id bound as
# `chain_lock_params(chain)`: waiting for it (`append`, before it reads the chain's last entry in a statement of its
# own, which then sees every append that held the lock), or only trying (`chain_head_columns`: true if taken).
CHAIN_LOCK = func.pg_advisory_xact_lock(bindparam("chain_lock_id", type_=BigInteger))
CHAIN_TRY_LOCK = func.pg_try_advisory_xact_lock(bindparam("chain_lock_id", type_=BigInteger))


def chain_lock_params(chain: str) -> dict[str, int]:
    return {"chain_lock_id": _chain_lock_id(chain)}


@dataclass(frozen=True)
class ChainHead:
    """A chain's last entry (seq 0 and GENESIS for an empty chain), read by the statement that took the chain's
    append lock without waiting for it (`chain_head_columns`)."""

    chain: str
    seq: int
    entry_hash: str


def chain_head_columns(chain: ColumnElement[str]) -> tuple[ColumnElement[Any], ...]:
    """Columns for the first statement of a transaction that will `append` to `chain` (PostgreSQL): the chain's append
    lock tried without waiting (`head_locked`, the lock id bound as `chain_lock_params(chain)`), and the chain's last
    entry (`head_seq`, `head_hash`, NULL for an empty chain), saving the round trip of a statement of its own.

    The head is read in the statement's snapshot, taken before the lock was tried. The lock was free then, so no
    append can commit after it; one that committed in between (microseconds) makes this head stale, and the
    entry appended on it then takes a position already taken: the unique (chain, seq) constraint refuses it and the
    caller's `transact` retries, as for any lost race. When the lock was held (`head_locked` false), the head may
    predate what its holder appends: `head_from_row` gives None and `append` waits for the lock and reads the head
    afresh. Each column is evaluated once per row; the head's subqueries once per statement."""
    last = _last_entry(chain)
    return (
        CHAIN_TRY_LOCK.label("head_locked"),
        last.with_only_columns(_TABLE.c.seq).scalar_subquery().label("head_seq"),
        last.with_only_columns(_TABLE.c.entry_hash).scalar_subquery().label("head_hash"),
    )


def head_from_rows(chain: str, rows: Sequence[Row[Any]]) -> ChainHead | None:
    """The head read with `chain_head_columns`, if every row found the lock free (the lock is tried once per row: a
    later row may have found it free once its holder committed, after the statement's snapshot); else None."""
    if not rows or not all(row.head_locked for row in rows):
        return None
    first = rows[0]
    return ChainHead(chain, first.head_seq, first.head_hash) if first.head_seq is not None else ChainHead(chain, 0, GENESIS)


def append(
    session: Session,
    key: bytes,
    event: AuditEvent,
    at: dt.datetime | None = None,
    *,
    record_key: bytes | None = None,
    head: ChainHead | None = None,
) -> AuditEntry:
    """Append `event` to its chain in the caller's transaction and return the inserted entry (not attached to the session).

    Its justification is sealed under `record_key`, the key of the chain's patient's record; without one
    (the "-" chain, a destroyed record) none is kept.

    On PostgreSQL the chain is locked until the caller's transaction ends: a transaction-scoped advisory
    lock on the chain (which also covers a chain with no entry yet, where there is no row to lock), then
    the chain's last entry read with SELECT … FOR UPDATE. Everywhere the unique (chain, seq) constraint
    is the final word: if another writer took the same position, the flush raises IntegrityError and
    the caller must roll back and retry (`transact` does this, as append_with_retry). `head`: the caller's
    transaction already took this chain's lock and read its head (`chain_head_columns`, PostgreSQL), so neither is
    done again.
    """
    check_event(event)
    moment = as_utc(at or dt.datetime.now(dt.UTC))
    if head is not None and head.chain == event.chain:
        seq, prev_hash = head.seq + 1, head.entry_hash
    else:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_LOCK, chain_lock_params(event.chain))
            last = session.execute(_LAST_LOCKED, {"chain": event.chain}).first()
        else:
            last = session.execute(_LAST, {"chain": event.chain}).first()
        seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, GENESIS)
    sealed = None
    if event.justification is not None and record_key is not None and event.chain != NO_PATIENT:
        sealed = seal_text(record_key, event.justification, justification_context(event.chain, seq))
    values = entry_values(key, event, moment, seq, prev_hash, sealed)
    entry = AuditEntry(**values)
    entry.id = session.execute(_INSERT, values).scalar_one()
    audit_appends.labels(event.outcome).inc()  # in the caller's transaction: counts appends made, a rollback included
    return entry


@dataclass
class ReadBeside:
    """A read made by the very statement that appends a quiet access's entry (`append_at_once`): one round trip for
    both. `statement` selects from APPENDED (the entry's insert as a CTE, its values bound by `append_at_once` beside
    `params`) and must return a row naming the entry (`entry_id` tells its id from the rows; None: nothing inserted).
    `rows`: the statement's rows, set only once the entry is appended (and so committed: autocommit)."""

    statement: Executable
    params: Mapping[str, object]
    entry_id: Callable[[Sequence[Row[Any]]], int | None]
    rows: Sequence[Row[Any]] | None = None


def append_at_once(session: Session, key: bytes, event: AuditEvent, head: ChainHead, beside: ReadBeside | None = None) -> int | None:
    """`append` after `head` as one statement of its own, for a session in autocommit (`Runtime.reads`, PostgreSQL): the
    entry is inserted only if the chain's append lock is free, taken by the insert's own transaction until it commits;
    None, nothing inserted, when another append held it. `head` was read without the lock (`chain_head_columns` in
    autocommit): if an append came after it, the entry takes a position already taken and the unique (chain, seq)
    constraint refuses it (IntegrityError). Either way the caller appends the slow way (`append` in a transaction).
    No justification: its record key would be read (or made) in the appending transaction. `beside`: the statement
    is that read's, the insert its CTE; its rows are kept in it when the entry went in. The entry's id if it went in
    (the entry is plain values here: no ORM object is built for it)."""
    check_event(event)
    if event.justification is not None or head.chain != event.chain:
        raise ValueError("append_at_once appends an event without justification to the chain its head was read from")
    values = entry_values(key, event, as_utc(dt.datetime.now(dt.UTC)), head.seq + 1, head.entry_hash, None)
    values |= chain_lock_params(event.chain)
    if beside is None:
        inserted = session.execute(INSERT_IF_FREE, values).scalar_one_or_none()
    else:
        rows = direct.rows(session, beside.statement, {**beside.params, **values})
        inserted = beside.entry_id(rows)
        if inserted is not None:
            beside.rows = rows
    if inserted is None:
        return None
    audit_appends.labels(event.outcome).inc()
    return cast(int, inserted)


def entry_values(key: bytes, event: AuditEvent, moment: dt.datetime, seq: int, prev_hash: str, sealed: bytes | None) -> dict[str, Any]:
    """An entry's columns (`INSERTED_COLUMNS`, the encoding's fields and its hash) recording `event` at position `seq`."""
    row: dict[str, Any] = dict(
        chain=event.chain, seq=seq, at=moment, actor_id=event.actor_id, actor_kind=event.actor_kind,
        profession=event.profession, action=event.action, document_id=event.document_id, outcome=event.outcome,
        reason=event.reason, emergency=event.emergency, prev_hash=prev_hash, version=CURRENT_VERSION,
        told_reason=event.told_reason, justification_sealed=sealed,
    )  # fmt: skip
    row["entry_hash"] = keyed(key, canonical_encoding(**row))
    return row


def append_many(session: Session, key: bytes, events: Sequence[AuditEvent], at: dt.datetime | None = None) -> None:
    """`append` for several events at once in the caller's transaction (a worker's micro-batch of deposits).

    Same chains, same hashes, fewer round trips: on PostgreSQL every chain concerned is locked by one
    statement (advisory locks taken in lock-id order, so two such writers cannot deadlock), the last entry
    of each chain is read by one query, and the entries go in as one executemany. Events of one chain are
    appended in the order given. These events carry no justification (none would be sealed: `append` it).
    """
    if not events:
        return
    for event in events:
        check_event(event)
        if event.justification is not None:
            raise ValueError("append_many seals no justification: append that event with append()")
    moment = as_utc(at or dt.datetime.now(dt.UTC))
    chains = sorted({event.chain for event in events})
    if session.get_bind().dialect.name == "postgresql":
        locks = sorted({_chain_lock_id(chain) for chain in chains})
        # unnest keeps the array's order: the locks are taken in ascending id order.
        session.execute(text("SELECT pg_advisory_xact_lock(x) FROM unnest(CAST(:ids AS bigint[])) AS t(x)"), {"ids": locks})
        # Each chain's last entry by one probe of the (chain, seq) index: not every entry of the chains, which grow with each access.
        given = func.unnest(bindparam("chains", chains, type_=postgresql.ARRAY(String))).table_valued("chain").render_derived("given")
        last = _last_entry(given.c.chain).with_for_update().lateral("last")
        heads_query = select(given.c.chain, last.c.seq, last.c.entry_hash).select_from(given.join(last, true()))
    else:
        latest = aliased(AuditEntry)
        last_seq = select(func.max(latest.seq)).where(latest.chain == AuditEntry.chain).scalar_subquery()
        heads_query = select(AuditEntry.chain, AuditEntry.seq, AuditEntry.entry_hash)
        heads_query = heads_query.where(AuditEntry.chain.in_(chains), AuditEntry.seq == last_seq)
    heads = {row.chain: (row.seq, row.entry_hash) for row in session.execute(heads_query)}
    rows: list[dict[str, Any]] = []
    for event in events:
        last_seq, prev_hash = heads.get(event.chain, (0, GENESIS))
        # Plain values: no ORM object is built for an entry inserted by Core.
        row = entry_values(key, event, moment, last_seq + 1, prev_hash, None)
        heads[event.chain] = (row["seq"], row["entry_hash"])
        rows.append(row)
    session.execute(insert(_TABLE), rows)  # Core: the ORM's bulk path (and its autoflush) adds nothing here
    for event in events:
        audit_appends.labels(event.outcome).inc()


INSERTED_COLUMNS = (
    "chain", "seq", "at", "actor_id", "actor_kind", "profession", "action", "document_id", "outcome", "reason", "emergency",
    "prev_hash", "entry_hash", "version", "told_reason", "justification_sealed",
)  # fmt: skip
_TABLE = cast(Table, AuditEntry.__table__)


def _last_entry(chain: ColumnElement[str]) -> Select[tuple[int, str]]:
    """The seq and hash of the chain's last entry (none for an empty chain)."""
    return select(_TABLE.c.seq, _TABLE.c.entry_hash).where(_TABLE.c.chain == chain).order_by(_TABLE.c.seq.desc()).limit(1)


# Built once: this runs on every API request, and a statement object built anew costs its construction and
# its cache key each time (the compiled form is cached either way). Core, not ORM-enabled: no ORM compile step.
_LAST = _last_entry(bindparam("chain"))
_LAST_LOCKED = _LAST.with_for_update()
_LOCK = select(CHAIN_LOCK)
_INSERT = insert(_TABLE).values({name: bindparam(name) for name in INSERTED_COLUMNS}).returning(_TABLE.c.id)
# The entry inserted only if the chain's append lock is free (`append_at_once`): no row otherwise.
INSERT_IF_FREE = (
    insert(_TABLE)
    .from_select(INSERTED_COLUMNS, select(*(bindparam(name, type_=_TABLE.c[name].type) for name in INSERTED_COLUMNS)).where(CHAIN_TRY_LOCK))
    .returning(_TABLE.c.id)
)
# The same insert as a CTE, for a statement that reads beside it (`ReadBeside`): a row (`id`) if the entry went in.
APPENDED = INSERT_IF_FREE.cte("appended")


# The record key of a chain's patient, read in the appending transaction (None if there is none).
RecordKeyLookup = Callable[[Session, str], bytes | None]


def append_looking_up_key(
    session: Session,
    key: bytes,
    event: AuditEvent,
    at: dt.datetime | None = None,
    *,
    record_key: RecordKeyLookup | None = None,
    head: ChainHead | None = None,
) -> AuditEntry:
    """`append`, the record key asked of `record_key(session, patient_id)` only for an event with a justification to seal."""
    sealing = record_key is not None and event.justification is not None and event.chain != NO_PATIENT
    sealing_key = record_key(session, event.chain) if record_key is not None and sealing else None
    return append(session, key, event, at, record_key=sealing_key, head=head)


def append_with_retry(
    sessions: sessionmaker[Session],
    key: bytes,
    event: AuditEvent,
    at: dt.datetime | None = None,
    *,
    attempts: int = 8,
    record_key: RecordKeyLookup | None = None,
) -> AuditEntry:
    """Append `event` in its own short transaction, retrying when another writer took the same position.

    `record_key(session, patient_id)` gives the record key a justification is sealed under (None if there is
    none); it is asked only for an event that has one. To append with other writes in one transaction, run
    `append_looking_up_key` in a unit of work of `pipeline.index.db.transact`."""
    return transact(sessions, lambda session: append_looking_up_key(session, key, event, at, record_key=record_key), retries=attempts - 1)
