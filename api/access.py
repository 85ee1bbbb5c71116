"""Every access goes through here: load the record, ask the policy, append to the audit chain.

Order matters for privacy: the record-level question is asked first, without looking at the
document, so a denial there (403 with its reason) says nothing about whether a document exists;
to an actor who may not learn that the record exists, that denial is the 404 of a missing record.
Only then is the document looked up; a missing document, another patient's, or one the policy
hides from this actor all give the same 404. The audit entry keeps the real reason, and what the
actor was told when it differs (`told_reason`), so the access log can read back to each actor no
more than their answer said.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.policy import DOCUMENT_ACTIONS, Actor, Decision, DocumentView, Record, access_log_scope, decide, knows_of_record
from api.problems import ApiProblem, not_found
from api.records import POLICY_COLUMNS, document_view, load_record, policy_fields
from pipeline.access.audit import NO_PATIENT, AuditEvent, append_looking_up_key, entries_for, open_justifications
from pipeline.core.clock import paris_date
from pipeline.core.keys import KeyProviderError
from pipeline.index.db import transact
from pipeline.index.models import AuditEntry, Document, Outbox, Patient, new_id
from pipeline.index.repo import insert_ignore
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

D = TypeVar("D")
# An access's audit entry races other appends to the same chain: so many tries (as append_with_retry).
APPEND_RETRIES = 7


@dataclass(frozen=True)
class Access:
    record: Record
    document: Document | None
    decision: Decision


@dataclass(frozen=True)
class _Verdict:
    """What an access attempt comes to: the audit entry to write, and the answer (an Access or a problem)."""

    chain: str
    document_id: str | None
    decision: Decision
    access: Access | None = None
    problem: ApiProblem | None = None


def _event(verdict: _Verdict, actor: Actor, action: str, justification: str | None) -> AuditEvent:
    decision, told = verdict.decision, verdict.problem.code if verdict.problem is not None else None
    return AuditEvent(
        chain=verdict.chain,
        actor_id=actor.id,
        actor_kind=actor.kind,
        profession=actor.profession,
        action=action,
        document_id=verdict.document_id,
        outcome="allowed" if decision.allowed else "denied",
        reason=decision.reason,
        emergency=decision.emergency,
        told_reason=told if told != decision.reason else None,
        justification=justification,
    )


def _record(rt: Runtime, actor: Actor, action: str, judge: Callable[[Session], _Verdict], justification: str | None = None) -> _Verdict:
    """Judge the attempt and append its audit entry (and the notifications it causes) in one transaction."""

    def attempt(session: Session) -> tuple[_Verdict, bool]:
        verdict = judge(session)
        entry = append_looking_up_key(
            session, rt.audit_key, _event(verdict, actor, action, justification), record_key=lambda s, chain: _record_key(rt, s, chain)
        )
        if not verdict.decision.allowed or verdict.chain == NO_PATIENT:
            return verdict, False
        return verdict, notify_access(session, actor, verdict.chain, verdict.decision, entry.id)

    verdict, urgent = transact(rt.sessions, attempt, retries=APPEND_RETRIES)
    if urgent:
        rt.wake_notifier()  # an emergency access is told at once, not at the next sweep
    return verdict


def _record_key(rt: Runtime, session: Session, patient_id: str) -> bytes | None:
    """The record key break-glass justifications are sealed under, in the caller's transaction: made if the
    record has none yet (an empty record); None if it was destroyed or cannot be unwrapped now (a master key
    out of reach). The attempt is audited either way: an entry without its justification beats no entry."""
    try:
        return rt.record_keys.for_patients(session, [patient_id]).get(patient_id)
    except KeyProviderError as error:
        log.error("a record key cannot be unwrapped (%s): break-glass justifications neither sealed nor opened", error)
        return None


def audit(rt: Runtime, actor: Actor, action: str, chain: str, document_id: str | None, decision: Decision) -> None:
    """Append one audit entry for an attempt already decided."""
    _record(rt, actor, action, lambda _session: _Verdict(chain, document_id, decision))


PROFESSIONAL_KINDS = frozenset({"professional", "emergency_regulator", "occupational_physician"})


def notify_access(session: Session, actor: Actor, patient_id: str, decision: Decision, entry_id: int) -> bool:
    """Queue the patient's notifications about an access (DOMAIN.md, "Notifications"), in the audit
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
    action: str,
    patient_id: str,
    document_id: str | None = None,
    emergency_reason: str | None = None,
    today: dt.date | None = None,
) -> Access:
    """Decide, audit, and raise the problem to answer when denied."""
    today = today or paris_date()
    if not _plausible(patient_id) or (document_id is not None and not _plausible(document_id)):
        # Ids that cannot exist are not written raw into the audit (they could be anything).
        audit(rt, actor, action, NO_PATIENT, None, Decision(False, "not_found"))
        raise not_found()

    def judge(session: Session) -> _Verdict:
        return _judge(session, actor, action, patient_id, document_id, emergency_reason, today)

    # The break-glass justification goes into the chain with the attempt it justifies (DOMAIN.md rule 4).
    verdict = _record(rt, actor, action, judge, emergency_reason)
    if verdict.problem is not None:
        raise verdict.problem
    assert verdict.access is not None
    return verdict.access


def _judge(
    session: Session, actor: Actor, action: str, patient_id: str, document_id: str | None, emergency_reason: str | None, today: dt.date
) -> _Verdict:
    record = load_record(session, patient_id)
    if record is None:
        return _Verdict(NO_PATIENT, document_id, Decision(False, "not_found"), problem=not_found())
    # Actions on one document (mask, hide from representatives…) first ask whether the actor may see the record's documents at all.
    record_action = "list" if action in DOCUMENT_ACTIONS else action
    record_level = decide(actor, record_action, record, None, today=today, emergency_reason=emergency_reason)
    if not record_level.allowed:
        # To an actor who may not learn that this record exists, the answer of a record that does not.
        problem = _forbidden(record_level.reason) if knows_of_record(actor, record) else not_found()
        return _Verdict(patient_id, document_id, record_level, problem=problem)
    if document_id is None:
        return _Verdict(patient_id, None, record_level, access=Access(record, None, record_level))
    # Looked up only now: a record-level denial says nothing about whether a document exists.
    document = session.get(Document, document_id)
    if document is None or document.patient_id != patient_id or document.wrapped_key is None:
        return _Verdict(patient_id, document_id, Decision(False, "not_found"), problem=not_found())
    view = document_view(document)
    decision = decide(actor, action, record, view, today=today, emergency_reason=emergency_reason)
    if decision.allowed:
        return _Verdict(patient_id, document_id, decision, access=Access(record, document, decision))
    # A reason only to an actor who may know the document exists; to anyone else, the same 404.
    if decide(actor, "read_metadata", record, view, today=today).allowed:
        return _Verdict(
            patient_id, document_id, decision, problem=ApiProblem(403, decision.reason, "Forbidden", f"Access denied: {decision.reason}.")
        )
    return _Verdict(patient_id, document_id, decision, problem=not_found())


def _forbidden(reason: str) -> ApiProblem:
    return ApiProblem(403, reason, "Forbidden", f"Access denied: {reason}.")


def _plausible(identifier: str) -> bool:
    """Our ids are UUIDs: at most 36 printable ASCII characters."""
    return 0 < len(identifier) <= 36 and identifier.isascii() and identifier.isprintable()


def visible(actor: Actor, action: str, record: Record, documents: Sequence[D], today: dt.date, emergency_reason: str | None) -> list[D]:
    """The documents of a list the actor may see (the list itself is audited once by the caller).

    `decide` is pure and never looks at a document's id, so documents alike in every other field the
    policy reads share one decision: a list of a thousand documents costs a few dozen decisions.
    """
    allowed: dict[tuple, bool] = {}
    shown = []
    for document in documents:
        fields = policy_fields(document)
        verdict = allowed.get(fields)
        if verdict is None:
            view = DocumentView("", *fields)
            verdict = allowed[fields] = decide(actor, action, record, view, today=today, emergency_reason=emergency_reason).allowed
        if verdict:
            shown.append(document)
    return shown


@dataclass(frozen=True)
class LogLine:
    """An access-log entry as one reader may read it."""

    entry: AuditEntry
    reason: str  # the reader's own denials read as they were answered (a 404: `not_found`)
    justification: str | None  # the break-glass justification, for the patient and the attending physician only


def access_log(rt: Runtime, actor: Actor, access: Access, *, limit: int, offset: int, today: dt.date | None = None) -> list[LogLine]:
    """A page of the record's access log as `actor` (allowed `read_access_log` by `access`) may read it.

    An entry about a document is shown only to a reader whom `decide` lets read that document's metadata
    today, so a document hidden from them (held until its announcement, hidden from representatives, masked,
    outside their matrix) leaves no trace: no entry, no count, no page. Their own entries are always shown
    (they know what they asked), with the answer they got instead of a reason it hid. The rest is
    `access_log_scope`'s: own entries only, the patient's own actions left out, justifications shown.
    """
    scope = access_log_scope(access.decision)
    record, me = access.record, (actor.kind, actor.id)
    with rt.sessions() as session:
        rows = session.execute(select(*POLICY_COLUMNS).where(Document.patient_id == record.patient_id)).all()
        shown = {row.id for row in visible(actor, "read_metadata", record, rows, today or paris_date(), None)}
        hidden = frozenset(row.id for row in rows) - shown
        entries = entries_for(
            session,
            record.patient_id,
            actor_id=actor.id if scope.own_only else None,
            actor_kind=actor.kind if scope.own_only else None,
            hidden_documents=() if scope.own_only else hidden,  # only their own entries anyway
            hidden_actor=("patient", record.patient_id) if scope.hides_patient else None,
            reader=me,
            limit=limit,
            offset=offset,
        )
        justifications: dict[int, str | None] = {}
        if scope.justifications and any(e.justification_sealed is not None for e in entries):
            # One record-key unwrap per page at most (then cached), and only for these readers.
            justifications = open_justifications(entries, _record_key(rt, session, record.patient_id))
    return [LogLine(e, _reason_read_back(e, me, hidden), justifications.get(e.id)) for e in entries]


def _reason_read_back(entry: AuditEntry, reader: tuple[str, str], hidden: frozenset[str]) -> str:
    """The reason `entry` shows `reader`: anyone else's entry its real reason, the reader's own denial its answer."""
    if (entry.actor_kind, entry.actor_id) != reader or entry.outcome == "allowed":
        return entry.reason
    if entry.version >= 2:
        return entry.told_reason or entry.reason
    # Entries from before version 2 do not say what the actor was told: a denial about a document hidden from
    # them today reads as the 404 it was.
    return "not_found" if entry.document_id in hidden else entry.reason
