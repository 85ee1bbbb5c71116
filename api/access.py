"""Every access goes through here: load the record, ask the policy, append to the audit chain.

Order matters for privacy: the record-level question is asked first, without looking at the
document, so a denial there (403 with its reason) says nothing about whether a document exists.
Only then is the document looked up; a missing document, another patient's, or one the policy
hides from this actor all give the same 404.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

from api.policy import Actor, Decision, DocumentView, Record, decide
from api.problems import ApiProblem, not_found
from api.records import document_view, load_record, policy_fields
from pipeline.audit import NO_PATIENT, AuditEvent, append_with_retry, audit_key
from pipeline.clock import paris_date
from pipeline.index.models import AuditEntry, Document, Outbox, Patient, new_id
from pipeline.index.repo import insert_ignore
from pipeline.runtime import Runtime

D = TypeVar("D")


@dataclass(frozen=True)
class Access:
    record: Record
    document: Document | None
    decision: Decision


def audit(rt: Runtime, actor: Actor, action: str, chain: str, document_id: str | None, decision: Decision) -> int:
    event = AuditEvent(
        chain=chain,
        actor_id=actor.id,
        actor_kind=actor.kind,
        profession=actor.profession,
        action=action,
        document_id=document_id,
        outcome="allowed" if decision.allowed else "denied",
        reason=decision.reason,
        emergency=decision.emergency,
    )
    urgent: list[bool] = []

    def notify(session: Session, entry: AuditEntry) -> None:
        if decision.allowed and chain != NO_PATIENT:
            urgent.append(notify_access(session, actor, chain, decision, entry.id))

    entry = append_with_retry(rt.sessions, audit_key(rt.hmac_secret), event, also=notify)
    if any(urgent):
        rt.wake_notifier()  # an emergency access is told at once, not at the next sweep
    return entry.id


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
    with rt.sessions() as session:
        record = load_record(session, patient_id)
        # Fetched with the record (one connection checkout) but not looked at before the record-level decision.
        document = session.get(Document, document_id) if record is not None and document_id is not None else None
    if record is None:
        audit(rt, actor, action, NO_PATIENT, document_id, Decision(False, "not_found"))
        raise not_found()
    # Actions on one document (mask, unmask) first ask whether the actor may see the record's documents at all.
    record_action = "list" if action in ("mask", "unmask") else action
    record_level = decide(actor, record_action, record, None, today=today, emergency_reason=emergency_reason)
    if not record_level.allowed:
        audit(rt, actor, action, patient_id, document_id, record_level)
        raise ApiProblem(403, record_level.reason, "Forbidden", f"Access denied: {record_level.reason}.")
    if document_id is None:
        audit(rt, actor, action, patient_id, None, record_level)
        return Access(record, None, record_level)
    if document is None or document.patient_id != patient_id or document.wrapped_key is None:
        audit(rt, actor, action, patient_id, document_id, Decision(False, "not_found"))
        raise not_found()
    view = document_view(document)
    decision = decide(actor, action, record, view, today=today, emergency_reason=emergency_reason)
    audit(rt, actor, action, patient_id, document_id, decision)
    if not decision.allowed:
        # A reason only to an actor who may know the document exists; to anyone else, the same 404.
        if decide(actor, "read_metadata", record, view, today=today).allowed:
            raise ApiProblem(403, decision.reason, "Forbidden", f"Access denied: {decision.reason}.")
        raise not_found()
    return Access(record, document, decision)


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
