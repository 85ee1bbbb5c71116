"""Every access goes through here: load the record, ask the policy, append to the audit chain.

Order matters for privacy: the record-level question is asked first, without looking at the
document, so a denial there (refused with its reason) says nothing about whether a document exists;
to an actor who may not learn that the record exists, that denial is told as a record that does not
exist (NOT_FOUND). Only then is the document looked at (it is read with the record, in the same statement,
whatever the decision); a missing document, another patient's, or one the policy hides from this actor are all
told NOT_FOUND. The audit entry keeps the real reason, and
what the actor was told when it differs (`told_reason`), so the access log can read back to each actor
no more than their answer said.

The gate knows no HTTP: it answers an `Access` or a `Refused`; the API turns a refusal into its status
code and problem document.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.access.audit import NO_PATIENT, AuditEvent, ChainHead, ReadBeside, append_at_once, append_looking_up_key
from pipeline.access.policy import (
    DOCUMENT_ACTIONS,
    Action,
    Actor,
    ActorKind,
    Decision,
    DocumentView,
    Reason,
    Record,
    decide,
    knows_of_record,
)
from pipeline.access.recordview import PolicyFields, document_view, policy_fields, read_record
from pipeline.access.vocabulary import NOT_FOUND, NotFound
from pipeline.core.clock import paris_date
from pipeline.core.keys import KeyProviderError
from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import Document, Outbox, Patient
from pipeline.index.repo import insert_ignore
from pipeline.runtime import Runtime

if TYPE_CHECKING:
    from pipeline.access.recordview import PolicyRow

log = logging.getLogger(__name__)

D = TypeVar("D", bound="PolicyRow")
# An access's audit entry races other appends to the same chain: so many tries (as append_with_retry).
APPEND_RETRIES = 7
# Health professionals' kinds: their first access to a record is told to the patient.
PROFESSIONAL_KINDS = frozenset({ActorKind.PROFESSIONAL, ActorKind.EMERGENCY_REGULATOR, ActorKind.OCCUPATIONAL_PHYSICIAN})


@dataclass(frozen=True)
class Access:
    """An allowed attempt: the record as the policy saw it, the document (None for a record-level action)."""

    record: Record
    document: Document | None
    decision: Decision


@dataclass(frozen=True)
class Refused:
    """A denied attempt, and what the actor is told: the policy's reason, or NOT_FOUND when the actor may
    not learn that the record (or the document) exists."""

    told: Reason | NotFound


Verdict = Access | Refused
# Work to start on an allowed document while its access is audited (`check`).
Meanwhile = Callable[[Document], object]


@dataclass(frozen=True)
class _Judged:
    """What an access attempt comes to: the audit entry to write, and the verdict (None: only audited)."""

    chain: str
    document_id: str | None
    decision: Decision
    verdict: Verdict | None
    chain_head: ChainHead | None = None  # the judging statement took the chain's append lock and read its head


def _event(judged: _Judged, actor: Actor, action: Action | str, justification: str | None) -> AuditEvent:
    decision = judged.decision
    told = judged.verdict.told if isinstance(judged.verdict, Refused) else None
    return AuditEvent(
        chain=judged.chain,
        actor_id=actor.id,
        actor_kind=actor.kind,
        profession=actor.profession,
        action=action,
        document_id=judged.document_id,
        outcome="allowed" if decision.allowed else "denied",
        reason=decision.reason,
        emergency=decision.emergency,
        told_reason=told if told != decision.reason else None,
        justification=justification,
    )


def _record(
    rt: Runtime,
    actor: Actor,
    action: Action | str,
    judge: Callable[[Session], _Judged],
    justification: str | None = None,
    *,
    quiet: bool = False,
    reads: Session | None = None,
    beside: ReadBeside | None = None,
    meanwhile: Meanwhile | None = None,
) -> _Judged:
    """Judge the attempt and append its audit entry (and the notifications it causes) in one transaction. `quiet`: the
    attempt can cause no notification nor carry a justification (a patient's own access), so it is first tried in two
    autocommit statements (`_record_at_once`), in `reads` if given, the second one also making the read `beside` if
    the access is allowed, and `meanwhile` called before it."""
    if quiet and justification is None:
        quick = _record_at_once(rt, actor, action, judge, reads, beside, meanwhile)
        if quick is not None:
            return quick

    def attempt(session: Session) -> tuple[_Judged, bool]:
        judged = judge(session)
        event = _event(judged, actor, action, justification)
        entry = append_looking_up_key(
            session, rt.audit_key, event, record_key=lambda s, chain: record_key(rt, s, chain), head=judged.chain_head
        )
        if not judged.decision.allowed or judged.chain == NO_PATIENT:
            return judged, False
        return judged, notify_access(session, actor, judged.chain, judged.decision, entry.id)

    judged, urgent = transact(rt.sessions, attempt, retries=APPEND_RETRIES)
    if urgent:
        rt.wake_notifier()  # an emergency access is told at once, not at the next sweep
    return judged


def _record_at_once(
    rt: Runtime,
    actor: Actor,
    action: Action | str,
    judge: Callable[[Session], _Judged],
    reads: Session | None,
    beside: ReadBeside | None,
    meanwhile: Meanwhile | None,
) -> _Judged | None:
    """A quiet attempt judged and audited in two round trips (PostgreSQL): the judging statement in autocommit (it
    tries the chain's lock and reads its head), then the entry inserted by a statement of its own, only if the lock
    is free then and the head still the chain's last (`append_at_once`); against the four of a transaction (BEGIN,
    the judging statement, the insert, COMMIT). None when another append got in the way: nothing was appended,
    and the caller judges and appends again in a transaction. The entry is still committed before the verdict is
    returned, every attempt audited, and the chain serialized by its lock and its unique (chain, seq). `reads`: the
    caller's session of `rt.reads` (else one of its own). `beside`: a read the insert's statement makes too when the
    access is allowed (its rows kept in it only if the entry went in): the caller's next round trip saved. `meanwhile`:
    called with the allowed document before the entry's statement is sent (see `check`)."""
    with nullcontext(reads) if reads is not None else rt.reads() as session:
        if session.get_bind().dialect.name != "postgresql":
            return None
        judged = judge(session)
        if judged.chain_head is None:  # the lock was held: an append is under way
            return None
        if meanwhile is not None and isinstance(judged.verdict, Access) and judged.verdict.document is not None:
            meanwhile(judged.verdict.document)
        try:
            read = beside if isinstance(judged.verdict, Access) else None
            entry = append_at_once(session, rt.audit_key, _event(judged, actor, action, None), judged.chain_head, read)
        except IntegrityError:  # an append came after the head was read
            session.rollback()  # the session's own state only (autocommit: nothing to undo), so the caller reads on in it
            return None
    return judged if entry is not None else None


def record_key(rt: Runtime, session: Session, patient_id: str) -> bytes | None:
    """The record key break-glass justifications are sealed under, in the caller's transaction: made if the
    record has none yet (an empty record); None if it was destroyed or cannot be unwrapped now (a master key
    out of reach). The attempt is audited either way: an entry without its justification beats no entry."""
    try:
        return rt.record_keys.for_patients(session, [patient_id]).get(patient_id)
    except KeyProviderError as error:
        log.error("a record key cannot be unwrapped (%s): break-glass justifications neither sealed nor opened", error)
        return None


def audit(rt: Runtime, actor: Actor, action: Action | str, chain: str, document_id: str | None, decision: Decision) -> None:
    """Append one audit entry for an attempt already decided."""
    _record(rt, actor, action, lambda _session: _Judged(chain, document_id, decision, None))


def notify_access(session: Session, actor: Actor, patient_id: str, decision: Decision, entry_id: int) -> bool:
    """Queue the patient's notifications about an access (docs/domain.md, "Notifications"), in the audit
    entry's transaction; True when one of them is urgent.

    Always for an emergency access (the patient and the attending physician) and for a
    professional's first access to the record; for every access if the patient asked. The unique
    (patient, kind, ref) constraint makes "first access" idempotent. No medical content: the
    outbox row names what happened and who, the message is composed at delivery.
    """
    if actor.id == patient_id:
        return False  # the patient reading their own record is not told about it
    patient = session.get(Patient, patient_id)
    if patient is None:
        return False
    rows = []
    if decision.emergency:
        rows.append(("emergency_access", str(entry_id)))
        if patient.attending_physician_id:
            rows.append(("emergency_access_to_attending", str(entry_id)))
    if actor.kind in PROFESSIONAL_KINDS:
        rows.append(("first_access", actor.id))
    if patient.notify_every_access:
        rows.append(("access", str(entry_id)))
    source = f"{actor.kind}:{actor.id}"[:128]
    detail = (actor.profession or actor.kind)[:64]
    values = [
        {"id": new_id(), "patient_id": patient_id, "kind": kind, "ref_id": ref[:36], "source": source, "detail": detail}
        for kind, ref in rows
    ]
    insert_ignore(session, Outbox, values)
    return decision.emergency


def check(
    rt: Runtime,
    actor: Actor,
    action: Action | str,
    patient_id: str,
    *,
    document_id: str | None = None,
    emergency_reason: str | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    reads: Session | None = None,
    beside: ReadBeside | None = None,
    meanwhile: Meanwhile | None = None,
) -> Verdict:
    """Decide and audit one attempt: the access, or what the refused actor is told. `now` is the moment the
    record is read at (the clock by default): grants with an end are in force strictly before it. `reads`: a session
    of `rt.reads` (autocommit) the caller reads in next: a patient's own access is judged and audited in it, on the
    request's one connection, and `beside` read by the statement that appends its entry if it is allowed (its rows are
    then in `beside.rows`; else None, and the caller reads it itself). `meanwhile`: called with the document when a
    patient's own access to it is allowed, before its entry is appended, so that the caller's work on the document
    (reading its bytes: pipeline/documents/stored.py, ReadAhead) overlaps the append; what it starts must not reach
    the actor before this returns, as the entry is committed only then (a refusal on a retried append raises or
    returns Refused instead). Not called when the entry is appended in a transaction of its own."""
    day = today or paris_date(now)
    if not _plausible(patient_id) or (document_id is not None and not _plausible(document_id)):
        # Ids that cannot exist are not written raw into the audit (they could be anything).
        audit(rt, actor, action, NO_PATIENT, None, Decision(False, NOT_FOUND))
        return Refused(NOT_FOUND)

    def judge(session: Session) -> _Judged:
        return _judge(session, actor, action, patient_id, document_id, emergency_reason, day, now)

    # The break-glass justification goes into the chain with the attempt it justifies (docs/domain.md rule 5). A
    # patient's own access causes no notification (`notify_access`).
    quiet = actor.id == patient_id
    verdict = _record(rt, actor, action, judge, emergency_reason, quiet=quiet, reads=reads, beside=beside, meanwhile=meanwhile).verdict
    assert verdict is not None  # every judgement has one
    return verdict


def _judge(
    session: Session,
    actor: Actor,
    action: Action | str,
    patient_id: str,
    document_id: str | None,
    emergency_reason: str | None,
    today: dt.date,
    now: dt.datetime | None,
) -> _Judged:
    # One statement reads the record, its document if one is named, and on PostgreSQL tries the record's audit chain
    # lock and reads the chain's head: the round trips of an access are that statement, the entry's insert and the
    # commit (and the lock and the head's statements of their own when another append held the lock).
    locking = session.get_bind().dialect.name == "postgresql"
    found = read_record(session, patient_id, now=now, for_actor=actor.id, lock_chain=locking, document_id=document_id)
    if found is None:
        return _Judged(NO_PATIENT, document_id, Decision(False, NOT_FOUND), Refused(NOT_FOUND))
    judged = _judge_record(actor, action, found.record, document_id, found.document, emergency_reason, today)
    return dataclasses.replace(judged, chain_head=found.chain_head)


def _judge_record(
    actor: Actor,
    action: Action | str,
    record: Record,
    document_id: str | None,
    document: Document | None,
    emergency_reason: str | None,
    today: dt.date,
) -> _Judged:
    """`document`: the record's live document `document_id`, or None (read with the record, looked at only here)."""
    patient_id = record.patient_id
    # Actions on one document (mask, hide from representatives…) first ask whether the actor may see the record's documents at all.
    record_action = Action.LIST if action in DOCUMENT_ACTIONS else action
    record_level = decide(actor, record_action, record, None, today=today, emergency_reason=emergency_reason)
    if not record_level.allowed:
        # To an actor who may not learn that this record exists, the answer of a record that does not.
        told = record_level.reason if knows_of_record(actor, record) else NOT_FOUND
        return _Judged(patient_id, document_id, record_level, Refused(told))
    if document_id is None:
        return _Judged(patient_id, None, record_level, Access(record, None, record_level))
    # Looked at only now: a record-level denial says nothing about whether a document exists.
    if document is None:
        return _Judged(patient_id, document_id, Decision(False, NOT_FOUND), Refused(NOT_FOUND))
    view = document_view(document)
    decision = decide(actor, action, record, view, today=today, emergency_reason=emergency_reason)
    if decision.allowed:
        return _Judged(patient_id, document_id, decision, Access(record, document, decision))
    # A reason only to an actor who may know the document exists; to anyone else, the same NOT_FOUND.
    knows = decide(actor, Action.READ_METADATA, record, view, today=today).allowed
    return _Judged(patient_id, document_id, decision, Refused(decision.reason if knows else NOT_FOUND))


def _plausible(identifier: str) -> bool:
    """Our ids are UUIDs: at most 36 printable ASCII characters."""
    return 0 < len(identifier) <= 36 and identifier.isascii() and identifier.isprintable()


class Decisions:
    """The policy's answer for one actor, action and record, per document, remembered per `PolicyFields`.

    `decide` is pure and never looks at a document's id, so documents alike in every other field the
    policy reads share one decision: a list of a thousand documents costs a few dozen decisions.
    """

    def __init__(self, actor: Actor, action: Action | str, record: Record, *, today: dt.date, emergency_reason: str | None) -> None:
        self._actor, self._action, self._record = actor, action, record
        self._today, self._emergency_reason = today, emergency_reason
        self._allowed: dict[PolicyFields, bool] = {}

    def allows(self, fields: PolicyFields) -> bool:
        """Whether the actor may do the action on a document the policy knows as `fields`."""
        verdict = self._allowed.get(fields)
        if verdict is None:
            view = DocumentView("", *fields)
            decision = decide(self._actor, self._action, self._record, view, today=self._today, emergency_reason=self._emergency_reason)
            verdict = self._allowed[fields] = decision.allowed
        return verdict


def visible(
    actor: Actor, action: Action | str, record: Record, documents: Sequence[D], *, today: dt.date, emergency_reason: str | None
) -> list[D]:
    """The documents of a list the actor may see (the list itself is audited once by the caller)."""
    decisions = Decisions(actor, action, record, today=today, emergency_reason=emergency_reason)
    return [document for document in documents if decisions.allows(policy_fields(document))]
