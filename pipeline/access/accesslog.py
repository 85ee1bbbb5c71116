"""Reading a record's access log back, as one reader may read it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.access.audit import entries_for, open_justifications
from pipeline.access.gate import Access, Decisions, record_key
from pipeline.access.policy import Action, Actor, ActorKind, access_log_scope
from pipeline.access.recordview import POLICY_FIELD_COLUMNS, PolicyFields, all_policy_rows, policy_fields
from pipeline.access.vocabulary import NOT_FOUND
from pipeline.core.clock import paris_date
from pipeline.index.models import AuditEntry, Document
from pipeline.runtime import Runtime


@dataclass(frozen=True)
class LogLine:
    """An access-log entry as one reader may read it."""

    entry: AuditEntry
    reason: str  # the reader's own denials read as they were answered (a 404: `not_found`)
    justification: str | None  # the break-glass justification, for the patient and the attending physician only


def access_log(
    rt: Runtime,
    actor: Actor,
    access: Access,
    *,
    limit: int,
    offset: int,
    today: dt.date | None = None,
    newest_first: bool = False,
    others_only: bool = False,
) -> list[LogLine]:
    """A page of the record's access log as `actor` (allowed `read_access_log` by `access`) may read it.

    An entry about a document is shown only to a reader whom `decide` lets read that document's metadata
    today, so a document hidden from them (held until its announcement, hidden from representatives, masked,
    outside their matrix) leaves no trace: no entry, no count, no page. Their own entries are always shown
    (they know what they asked), with the answer they got instead of a reason it hid. The rest is
    `access_log_scope`'s: own entries only, the patient's own actions left out, justifications shown.
    `others_only` leaves the reader's own entries out too (the portal's home page: who else came).
    """
    scope = access_log_scope(access.decision)
    record, me = access.record, (actor.kind, actor.id)
    with rt.sessions() as session:
        decisions = Decisions(actor, Action.READ_METADATA, record, today=today or paris_date(), emergency_reason=None)
        hidden = hidden_documents(session, decisions, record.patient_id)
        entries = entries_for(
            session,
            record.patient_id,
            actor_id=actor.id if scope.own_only else None,
            actor_kind=actor.kind if scope.own_only else None,
            hidden_documents=() if scope.own_only else hidden,  # only their own entries anyway
            hidden_actor=(ActorKind.PATIENT, record.patient_id) if scope.hides_patient else (me if others_only else None),
            reader=me,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
        )
        justifications: dict[int, str | None] = {}
        if scope.justifications and any(e.justification_sealed is not None for e in entries):
            # One record-key unwrap per page at most (then cached), and only for these readers.
            justifications = open_justifications(entries, record_key(rt, session, record.patient_id))
    return [LogLine(e, _reason_read_back(e, me, hidden), justifications.get(e.id)) for e in entries]


def hidden_documents(session: Session, decisions: Decisions, patient_id: str) -> frozenset[str]:
    """The ids of the record's documents, shredded ones included, that `decisions` does not allow.

    Decided per group of documents alike in every field the policy reads (one row each from the index); the
    documents themselves are read only when some group is denied, so a reader who may see the whole record
    costs one small query, not one row per document.
    """
    groups = session.execute(select(*POLICY_FIELD_COLUMNS).where(Document.patient_id == patient_id).distinct()).all()
    fields: list[PolicyFields] = [tuple(group) for group in groups]  # type: ignore[misc]
    if all(decisions.allows(group) for group in fields):
        return frozenset()
    return frozenset(row.id for row in all_policy_rows(session, patient_id) if not decisions.allows(policy_fields(row)))


def _reason_read_back(entry: AuditEntry, reader: tuple[str, str], hidden: frozenset[str]) -> str:
    """The reason `entry` shows `reader`: anyone else's entry its real reason, the reader's own denial its answer."""
    if (entry.actor_kind, entry.actor_id) != reader or entry.outcome == "allowed":
        return entry.reason
    if entry.version >= 2:
        return entry.told_reason or entry.reason
    # Entries from before version 2 do not say what the actor was told: a denial about a document hidden from
    # them today reads as the 404 it was.
    return NOT_FOUND if entry.document_id in hidden else entry.reason
