"""Queries and state transitions on the index. Every transition is one short transaction (a document's outcome
is the caller's unit of work, pipeline/documents/batching.py, which adds the deposit's audit entry)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Result, String, Table, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.attributes import set_committed_value

from pipeline.core.clock import as_utc
from pipeline.core.keys import WrappedKey
from pipeline.index.base import Base, new_id, table_of
from pipeline.index.models import Batch, BatchItem, Document, Outbox, Patient
from pipeline.index.states import ITEM_FINAL, DocumentStatus, ItemState, RecordStatus

FINAL_STATES = ITEM_FINAL


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


RowValues = dict[str, Any]  # a row to insert, by column name


def insert_ignore(session: Session, model: type[Base] | Table, values: RowValues | list[RowValues]) -> None:
    """INSERT … ON CONFLICT DO NOTHING (one row, or many as one executemany) on SQLite and PostgreSQL:
    the unique constraint decides, not a check."""
    rows = values if isinstance(values, list) else [values]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # One cached statement; with no RETURNING, psycopg runs it as an executemany (one statement per row, pipelined).
    session.execute(dialect.insert(model).on_conflict_do_nothing(), rows)


def among(
    session: Session, column: ColumnElement[str] | InstrumentedAttribute[str] | InstrumentedAttribute[str | None], values: Collection[str]
) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL one array parameter (`= ANY(…)`) rather than one per value,
    which thousands of values (a feed chunk's patients) make far cheaper to send and plan."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(String)))
    return column.in_(values)


@dataclass(frozen=True)
class Quarantine:
    """Where a rejected document's encrypted copy is, until when, and its wrapped data key."""

    object_key: str
    until: dt.date
    wrapped: WrappedKey


@dataclass(frozen=True)
class Claim:
    """The right to run one processing attempt on an item."""

    item: BatchItem
    attempt: int
    previous_pending_key: str | None


class Refusal(StrEnum):
    """Why a message found nothing to do."""

    FINAL = "final"  # the item is indexed or rejected already
    BUSY = "busy"  # a live attempt holds it: this message is a duplicate (a re-send, a redelivery)


def lease_held(lease_until: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a claim's lease still runs (its worker renewed it lately)."""
    return lease_until is not None and as_utc(lease_until) > now


def claim_item(
    session: Session, item_id: str, lease: dt.timedelta = dt.timedelta(seconds=15), resuming: int | None = None
) -> Claim | Refusal:
    """Start an attempt: count it and return the item, or a Refusal when the message has nothing to do.

    The counters are committed before any work, so a file that kills its worker is still counted
    when its message comes back. An item `processing` under a lease that still runs is another
    live attempt's (BUSY); under a lapsed lease its worker died, and this start counts a crash,
    unless the attempt was `resuming`'s: this message's own attempt, which an outage interrupted.
    """
    return claim_items(session, [item_id], lease, {} if resuming is None else {item_id: resuming})[item_id]


def claim_items(
    session: Session, item_ids: Collection[str], lease: dt.timedelta, resuming: Mapping[str, int] | None = None
) -> dict[str, Claim | Refusal]:
    """`claim_item` for every item of a message, in one transaction: the rows are read and locked
    by one SELECT (in id order, so two messages sharing items cannot deadlock) and the claims
    written by one batched UPDATE. `resuming` gives, by item, the attempt this message's own try
    held when an outage interrupted it."""
    ids = sorted(set(item_ids))
    query = select(BatchItem).where(among(session, BatchItem.id, ids)).order_by(BatchItem.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    found = {item.id: item for item in session.scalars(query)}
    now = _utcnow()
    answers: dict[str, Claim | Refusal] = {}
    claims: list[RowValues] = []
    for item_id in ids:
        item = found.get(item_id)
        if item is None or item.state in FINAL_STATES:
            answers[item_id] = Refusal.FINAL
            continue
        previous = item.pending_object_key
        crashes = item.crashes
        if item.state == ItemState.PROCESSING and item.attempts != (resuming or {}).get(item_id):
            if lease_held(item.lease_until, now):
                answers[item_id] = Refusal.BUSY
                continue
            crashes += 1
        attempt = item.attempts + 1
        claims.append({"item": item_id, "n": attempt, "crashed": crashes, "key": f"docs/{item.document_id}.{attempt}"})
        answers[item_id] = Claim(item, attempt, previous)
    if claims:
        # One Core executemany rather than the ORM's flush of each item (its unit of work cost more CPU than the
        # statements); the loaded items are given the same values as committed ones, for the stages that read them.
        common = {"started_at": now, "lease_until": now + lease, "state": ItemState.PROCESSING}
        table = table_of(BatchItem)
        values = {"attempts": bindparam("n"), "crashes": bindparam("crashed"), "pending_object_key": bindparam("key"), **common}
        session.execute(update(table).where(table.c.id == bindparam("item")).values(values), claims)
        for row in claims:
            item = found[row["item"]]
            for name, value in {"attempts": row["n"], "crashes": row["crashed"], "pending_object_key": row["key"], **common}.items():
                set_committed_value(item, name, value)
    session.commit()
    return answers


def still_claimed(session: Session, claims: Collection[Claim]) -> set[str]:
    """The ids of the items whose claim is still the given one, locked (one SELECT of three columns, in id order,
    without loading the items); an item another attempt took over, or that ended meanwhile, is left out. Their
    outcomes are then written by `mark_final`."""
    attempts = {claim.item.id: claim.attempt for claim in claims}
    if not attempts:
        return set()
    table = table_of(BatchItem)
    query = select(table.c.id, table.c.state, table.c.attempts).where(among(session, table.c.id, attempts)).order_by(table.c.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.id for row in session.execute(query) if row.state == ItemState.PROCESSING and row.attempts == attempts[row.id]}


@dataclass(frozen=True)
class Verdict:
    """A rejection to write on a locked item (`mark_final`)."""

    reason: str
    message: str
    quarantine: Quarantine | None = None


def mark_final(session: Session, indexed: Mapping[str, str], rejected: Mapping[str, Verdict]) -> None:
    """`indexed` (item id -> its document's id) and `rejected` for items locked by `still_claimed`, in the
    caller's transaction: Core executemany statements (one for the indexed, one or two for the rejected),
    the item's title dropped (the document keeps it, under the record key), its lease kept until its inbox copy
    is gone (`inbox_forgotten`)."""
    table = table_of(BatchItem)
    final: RowValues = {"title_sealed": None, "finished_at": _utcnow(), "pending_object_key": None}  # the lease stays: inbox_forgotten
    by_id = table.c.id == bindparam("item")
    if indexed:
        values: RowValues = {"state": ItemState.INDEXED, "reason": None, "message": None, "document_id": bindparam("document"), **final}
        session.execute(update(table).where(by_id).values(values), [{"item": i, "document": d} for i, d in indexed.items()])
    plain = [{"item": i, "why": v.reason, "text": v.message} for i, v in rejected.items() if v.quarantine is None]
    kept = [
        {"item": i, "why": v.reason, "text": v.message, "q_key": q.object_key, "q_until": q.until, "q_master": q.wrapped.key_id,
         "q_wrapped": q.wrapped.blob}
        for i, v in rejected.items() if (q := v.quarantine) is not None
    ]  # fmt: skip
    verdict: RowValues = {"state": ItemState.REJECTED, "reason": bindparam("why"), "message": bindparam("text"), **final}
    if plain:
        session.execute(update(table).where(by_id).values(verdict), plain)
    if kept:
        quarantined: RowValues = {"quarantine_key": bindparam("q_key"), "quarantine_until": bindparam("q_until"),
                       "quarantine_master_key_id": bindparam("q_master"), "quarantine_wrapped_key": bindparam("q_wrapped")}  # fmt: skip
        session.execute(update(table).where(by_id).values({**verdict, **quarantined}), kept)


def ensure_patient(session: Session, ins: str) -> Patient:
    insert_ignore(session, Patient, {"id": new_id(), "ins": ins, "status": RecordStatus.OPEN})
    return session.scalars(select(Patient).where(Patient.ins == ins)).one()


def find_document(session: Session, source: str, source_document_id: str) -> Document | None:
    """The source's document of that id: its latest version (whatever its status), or None."""
    return session.scalars(
        select(Document)
        .where(Document.source == source, Document.source_document_id == source_document_id)
        .order_by(Document.version.desc())
        .limit(1)
    ).first()


def document_versions(session: Session, source: str, source_document_id: str) -> list[Document]:
    """Every version of the source's document, oldest first."""
    query = select(Document).where(Document.source == source, Document.source_document_id == source_document_id)
    return list(session.scalars(query.order_by(Document.version)))


def supersede(session: Session, document_id: str, successor_id: str | None) -> bool:
    """Mark a current version superseded (by `successor_id`, or None: deprecated by its source), in the
    caller's unit of work. False when it is no longer current (another writer got there first)."""
    values = {"status": DocumentStatus.SUPERSEDED, "superseded_by_id": successor_id, "status_changed_at": _utcnow()}
    changed = session.execute(
        update(Document).where(Document.id == document_id, Document.status == DocumentStatus.CURRENT, Document.live).values(**values)
    )
    return affected(changed) == 1


def insert_documents(session: Session, documents: Sequence[Document]) -> None:
    """Insert new documents' rows (built as Document objects, never added to the session) in the caller's
    transaction: one Core executemany, without the ORM's unit of work (its bookkeeping cost a worker more
    CPU than the statement). Their items are then marked `indexed`."""
    if documents:
        # The columns each was given (the others take their defaults); every deposit sets the same ones.
        table = table_of(Document)
        rows = [{name: value for name, value in vars(document).items() if name in table.c} for document in documents]
        session.execute(insert(table), rows)


def notification(patient_id: str, batch_id: str, source: str) -> RowValues:
    """The outbox row of a deposit: one per patient and batch (the unique constraint merges the rest)."""
    return {"id": new_id(), "patient_id": patient_id, "kind": "documents_added", "ref_id": batch_id, "source": source}


def queue_notifications(session: Session, rows: list[RowValues]) -> None:
    """Insert the outbox rows not there yet (one statement), in the caller's transaction."""
    insert_ignore(session, Outbox, rows)


def commit_rejected(session: Session, claim: Claim | None, item_id: str, reason: str, message: str, quarantine: Quarantine | None) -> bool:
    """Reject the item for `reason` and commit, if it is still `claim`'s (without a claim: if it is not final yet);
    whether it was."""
    if claim is not None:
        open_ = item_id in still_claimed(session, [claim])
    else:
        open_ = session.scalar(select(BatchItem.state).where(BatchItem.id == item_id)) not in (None, *FINAL_STATES)
    if not open_:
        session.rollback()
        return False
    mark_final(session, {}, {item_id: Verdict(reason, message, quarantine)})
    session.commit()
    return True


def release_claim(session: Session, item_id: str, attempt: int, crashed: bool = False) -> None:
    """`attempt` ended without a verdict: the item waits `queued` again (unless another attempt took
    it), counting a crash if the attempt hit an unexpected error. The lease stays: the message that
    ran the attempt still holds the item (recovery.py)."""
    session.execute(
        update(BatchItem)
        .where(BatchItem.id == item_id, BatchItem.state == ItemState.PROCESSING, BatchItem.attempts == attempt)
        .values(state=ItemState.QUEUED, crashes=BatchItem.crashes + int(crashed))
    )
    session.commit()


def wait_for_intake(session: Session, item_id: str, attempt: int) -> None:
    """The item's bytes are not in the inbox (its intake died before storing them): it waits
    `queued` for the same intake to run again, and the recovery sweep leaves its batch alone."""
    item = session.get(BatchItem, item_id)
    if item is not None:
        session.execute(update(Batch).where(Batch.id == item.batch_id).values(sent_at=None))
    release_claim(session, item_id, attempt)


def inbox_forgotten(session: Session, item_id: str | Collection[str]) -> None:
    """Final items' inbox copies are gone: their leases, kept until then, are cleared (one UPDATE)."""
    ids = [item_id] if isinstance(item_id, str) else list(item_id)
    if not ids:
        return
    session.execute(
        update(BatchItem)
        .where(among(session, BatchItem.id, ids), BatchItem.state.in_(FINAL_STATES), BatchItem.lease_until.is_not(None))
        .values(lease_until=None)
    )
    session.commit()


def reopen_exhausted(session: Session, batch_id: str) -> list[str]:
    """Items of the batch that ended `retries_exhausted` wait `queued` again (the remedy the README
    gives: run the same intake again); returns their ids. No other rejection is re-opened: those
    are verdicts on the document."""
    exhausted = (BatchItem.batch_id == batch_id, BatchItem.state == ItemState.REJECTED, BatchItem.reason == "retries_exhausted")
    ids = list(session.scalars(select(BatchItem.id).where(*exhausted)))
    if ids:
        reopen = {"state": ItemState.QUEUED, "reason": None, "message": None, "finished_at": None, "lease_until": None}
        session.execute(update(BatchItem).where(BatchItem.id.in_(ids), *exhausted).values(**reopen))
        session.commit()
    return ids


def mark_sent(session: Session, batch_id: str) -> None:
    """Every unfinished item of the batch has had its message sent: from now on the recovery sweep
    may send again one whose message the broker lost."""
    session.execute(update(Batch).where(Batch.id == batch_id).values(sent_at=_utcnow()))
    session.commit()


def relocate_inbox(session: Session, item_id: str, key: str, member: str | None) -> None:
    """Point an unfinished item at where its bytes now wait in the inbox."""
    values = {"inbox_key": key, "inbox_member": member}
    session.execute(update(BatchItem).where(BatchItem.id == item_id, BatchItem.state.not_in(FINAL_STATES)).values(**values))
    session.commit()


def relocate_many(session: Session, moves: list[tuple[str, str, str | None]]) -> None:
    """`relocate_inbox` for many items (item id, key, member) in one executemany and one commit."""
    if not moves:
        return
    table = table_of(BatchItem)
    statement = (
        update(table)
        .where(table.c.id == bindparam("item"), *(table.c.state != state for state in sorted(FINAL_STATES)))  # no IN: executemany
        .values(inbox_key=bindparam("key"), inbox_member=bindparam("member"))
    )
    session.execute(statement, [{"item": item, "key": key, "member": member} for item, key, member in moves])
    session.commit()


def batch_items(session: Session, batch_id: str) -> Sequence[BatchItem]:
    return session.scalars(
        select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.row_number.nulls_last(), BatchItem.file)
    ).all()


def batch_counts(session: Session, batch_id: str) -> dict[ItemState, int]:
    rows = session.execute(select(BatchItem.state, func.count()).where(BatchItem.batch_id == batch_id).group_by(BatchItem.state))
    return {state: count for state, count in rows}


def documents_by_id(session: Session, document_ids: Sequence[str]) -> dict[str, Document]:
    docs = session.scalars(select(Document).where(Document.id.in_(document_ids))).all() if document_ids else []
    return {doc.id: doc for doc in docs}


def batch_source(session: Session, batch_id: str) -> str:
    return session.scalars(select(Batch.source).where(Batch.id == batch_id)).one()


def still_needed(session: Session, batch_id: str, key: str) -> bool:
    """Whether an item of the batch still waits on the shared inbox object `key`."""
    waiting = select(func.count()).where(BatchItem.batch_id == batch_id, BatchItem.inbox_key == key, BatchItem.state.not_in(FINAL_STATES))
    return bool(session.scalar(waiting))


def still_waited_on(session: Session, batch_ids: Collection[str], keys: Collection[str]) -> set[str]:
    """Which of the inbox objects `keys` (of the batches `batch_ids`) an unfinished item still waits on (one query)."""
    if not keys:
        return set()
    waiting = select(BatchItem.inbox_key).where(
        among(session, BatchItem.batch_id, batch_ids), among(session, BatchItem.inbox_key, keys), BatchItem.state.not_in(FINAL_STATES)
    )
    return {key for key in session.scalars(waiting.distinct()) if key is not None}


def batch_sources(session: Session, batch_ids: Collection[str]) -> dict[str, str]:
    """The source of each batch, by id (one query)."""
    return {row.id: row.source for row in session.execute(select(Batch.id, Batch.source).where(among(session, Batch.id, batch_ids)))}


def affected(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE changed. Session.execute is typed to return any Result; for those
    statements it is a CursorResult, which holds the count."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"not the result of an UPDATE or DELETE: {type(result).__name__}")
    return result.rowcount
