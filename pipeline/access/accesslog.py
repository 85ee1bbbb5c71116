"""Reading a record's access log back, as one reader may read it, a page at a time in SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, exists, or_, select
from sqlalchemy.orm import Session

from pipeline.access.auditread import MAX_PAGE, entries_for, open_justifications
from pipeline.access.gate import Access, Decisions, record_key
from pipeline.access.policy import Action, Actor, ActorKind, access_log_scope
from pipeline.access.recordview import POLICY_COLUMNS, POLICY_FIELD_COLUMNS, PolicyFields, policy_fields
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
    offset: int = 0,
    after_seq: int | None = None,
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

    Paged in the query: the hidden documents are named by the groups of policy fields the reader is denied
    (`hidden_condition`), so a page costs the same whatever the record holds. `offset` pages by position,
    `after_seq` by keyset (the last entry's `seq` of the previous page; see `iter_access_log`).
    """
    scope = access_log_scope(access.decision)
    record, me = access.record, (actor.kind, actor.id)
    with rt.sessions() as session:
        decisions = Decisions(actor, Action.READ_METADATA, record, today=today or paris_date(), emergency_reason=None)
        hiding = None if scope.own_only else hidden_condition(record.patient_id, denied_groups(session, decisions, record.patient_id))
        entries = entries_for(
            session,
            record.patient_id,
            actor_id=actor.id if scope.own_only else None,
            actor_kind=actor.kind if scope.own_only else None,
            hidden_when=hiding,  # a reader of their own entries only sees them all anyway
            hidden_actor=(ActorKind.PATIENT, record.patient_id) if scope.hides_patient else (me if others_only else None),
            reader=me,
            limit=limit,
            offset=offset,
            after_seq=after_seq,
            newest_first=newest_first,
        )
        justifications: dict[int, str | None] = {}
        if scope.justifications and any(e.justification_sealed is not None for e in entries):
            # One record-key unwrap per page at most (then cached), and only for these readers.
            justifications = open_justifications(entries, record_key(rt, session, record.patient_id))
        # Only the reader's own denials from before encoding version 2 need to know what is hidden from them.
        older = {e.document_id for e in entries if e.version < 2 and e.outcome != "allowed" and (e.actor_kind, e.actor_id) == me}
        hidden = _hidden_among(session, decisions, record.patient_id, sorted(d for d in older if d is not None))
    return [LogLine(e, _reason_read_back(e, me, hidden), justifications.get(e.id)) for e in entries]


def iter_access_log(
    rt: Runtime, actor: Actor, access: Access, *, page_size: int = MAX_PAGE, today: dt.date | None = None
) -> Iterator[LogLine]:
    """The whole access log as `actor` may read it (see `access_log`), read `page_size` entries at a time by
    keyset (each page after the last `seq` read): for an export, whatever the log's length."""
    after: int | None = None
    while True:
        page = access_log(rt, actor, access, limit=page_size, after_seq=after, today=today)
        yield from page
        if len(page) < page_size:
            return
        after = page[-1].entry.seq


def denied_groups(session: Session, decisions: Decisions, patient_id: str) -> list[PolicyFields]:
    """The groups of documents alike in every field the policy reads, shredded ones included (the log names
    documents that may be gone since), that `decisions` does not allow: one row per group from the index."""
    groups = session.execute(select(*POLICY_FIELD_COLUMNS).where(Document.patient_id == patient_id).distinct()).all()
    fields: list[PolicyFields] = [tuple(group) for group in groups]
    return [group for group in fields if not decisions.allows(group)]


def hidden_condition(patient_id: str, denied: Sequence[PolicyFields]) -> ColumnElement[bool] | None:
    """True of an audit entry about a document of the record in one of the `denied` groups (None: none is)."""
    if not denied:
        return None
    return exists().where(Document.id == AuditEntry.document_id, Document.patient_id == patient_id, _in_groups(denied))


def hidden_documents(session: Session, decisions: Decisions, patient_id: str) -> frozenset[str]:
    """The ids of the record's documents, shredded ones included, that `decisions` does not allow.

    Decided per group of documents alike in every field the policy reads; the documents themselves are read
    only when some group is denied, so a reader who may see the whole record costs one small query."""
    denied = denied_groups(session, decisions, patient_id)
    if not denied:
        return frozenset()
    rows = session.execute(select(Document.id).where(Document.patient_id == patient_id, _in_groups(denied))).all()
    return frozenset(row.id for row in rows)


def _in_groups(groups: Sequence[PolicyFields]) -> ColumnElement[bool]:
    """True of a document whose policy fields are those of one of `groups` (a missing value matched as missing)."""

    def same(column: SQLColumnExpression[Any], value: object) -> ColumnElement[bool]:
        return column.is_(None) if value is None else column == value

    return or_(*(and_(*(same(c, v) for c, v in zip(POLICY_FIELD_COLUMNS, group, strict=True))) for group in groups))


def _hidden_among(session: Session, decisions: Decisions, patient_id: str, document_ids: Sequence[str]) -> frozenset[str]:
    """Which of these documents of the record `decisions` does not allow (at most a page of them)."""
    if not document_ids:
        return frozenset()
    rows = session.execute(select(*POLICY_COLUMNS).where(Document.patient_id == patient_id, Document.id.in_(document_ids))).all()
    return frozenset(row.id for row in rows if not decisions.allows(policy_fields(row)))


def _reason_read_back(entry: AuditEntry, reader: tuple[str, str], hidden: frozenset[str]) -> str:
    """The reason `entry` shows `reader`: anyone else's entry its real reason, the reader's own denial its answer."""
    if (entry.actor_kind, entry.actor_id) != reader or entry.outcome == "allowed":
        return entry.reason
    if entry.version >= 2:
        return entry.told_reason or entry.reason
    # Entries from before version 2 do not say what the actor was told: a denial about a document hidden from
    # them today reads as the 404 it was.
    return NOT_FOUND if entry.document_id in hidden else entry.reason
