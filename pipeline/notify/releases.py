"""A document its author held from the patient until an announcement is told to the patient once shown.

A deposit's message counts only the documents the patient could see when it was composed (see
`dispatch._documents_told`): a held one is left out, so without this the patient would never hear of it.
When the hold ends (its announcement date, one month after the deposit, or the author's release), a
`documents_released` event is queued for the document, unless the deposit's message counted it already:
composed on or after the release day, or still waiting (it will count it, the document being shown by then).
Such a document gets its event marked composed, so the next pass does not look at it again.

The outbox's unique (patient, kind, ref) row makes it once per document whichever process sees the release
first. Releases are looked for over the last `LOOKBACK_DAYS` only: a release older than that (every
sweeper stopped for a week) is stale news, and past `notify_keep_days` its composed event, which says it was
dealt with, may have been deleted by retention.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.orm import Session

from pipeline.access.policy import hold_release
from pipeline.access.recordview import POLICY_COLUMNS, document_view
from pipeline.core.clock import PARIS, as_utc, paris_date
from pipeline.index.base import new_id
from pipeline.index.models import BatchItem, Document, Outbox
from pipeline.index.repo import RowValues, insert_ignore
from pipeline.index.states import OutboxKind, OutboxStatus
from pipeline.runtime import Runtime

LOOKBACK_DAYS = 7
# The one-month rule: a deposit made between these many days ago is released by it within the lookback.
_MONTH_DAYS = (28, 31)


def queue_releases(rt: Runtime, now: dt.datetime) -> None:
    """Queue a `documents_released` event for each held document whose hold ended within the lookback and
    that no event covers yet. Every notification pass of every process runs it: the look is an autocommit read
    (no transaction), and a transaction is opened only when there is something to queue."""
    today = paris_date(now)
    since = today - dt.timedelta(days=min(LOOKBACK_DAYS, rt.settings.notify_keep_days - 1))
    with rt.reads() as session:
        shown = [
            (Held(row.id, row.patient_id, row.source, row.batch_id), dt.datetime.combine(release, dt.time(), PARIS))
            for row in session.execute(_candidates(since, today))
            if (release := hold_release(document_view(row))) is not None and since <= release <= today
        ]
    if not shown:
        return
    with rt.sessions() as session:
        insert_ignore(session, Outbox, [released_event(session, held, shown_since, now) for held, shown_since in shown])
        session.commit()


def _candidates(since: dt.date, today: dt.date) -> Select[*tuple[Any, ...]]:
    """Live held documents that may have been released between `since` and `today` and have no event yet: a
    wide cut in SQL (the held ones are few, and indexed), the exact release day decided by the policy."""

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)

    first, last = since - dt.timedelta(days=_MONTH_DAYS[1]), today - dt.timedelta(days=_MONTH_DAYS[0] - 1)
    kind = OutboxKind.DOCUMENTS_RELEASED
    told = exists().where(Outbox.patient_id == Document.patient_id, Outbox.kind == kind, Outbox.ref_id == Document.id)
    return (
        select(*POLICY_COLUMNS, Document.patient_id, BatchItem.batch_id)
        .join(BatchItem, BatchItem.id == Document.batch_item_id)
        .where(
            Document.hidden_from_patient_until.is_not(None),
            Document.live,
            or_(
                Document.hidden_from_patient_until.between(since, today),
                and_(Document.created_at >= midnight(first), Document.created_at < midnight(last)),
            ),
            ~told,
        )
    )


@dataclass(frozen=True)
class Held:
    """A held document, as its release event needs it."""

    document_id: str
    patient_id: str
    source: str
    batch_id: str  # its deposit's

    @classmethod
    def of(cls, session: Session, document: Document) -> Held:
        batch_id = session.scalars(select(BatchItem.batch_id).where(BatchItem.id == document.batch_item_id)).one()
        return cls(document.id, document.patient_id, document.source, batch_id)


def released_event(session: Session, document: Held, shown_since: dt.datetime, now: dt.datetime) -> RowValues:
    """The outbox row telling the patient that `document`, shown to them since `shown_since` (the release
    day's start in Paris, or the author's release), may be read: pending, or already composed when its
    deposit's message counts it (composed since, or not yet)."""
    deposit = session.execute(
        select(Outbox.status, Outbox.composed_at).where(
            Outbox.patient_id == document.patient_id, Outbox.kind == OutboxKind.DOCUMENTS_ADDED, Outbox.ref_id == document.batch_id
        )
    ).first()
    # No deposit event: never queued, or composed so long ago that retention deleted it (before the release).
    counted = deposit is not None and (
        deposit.status == OutboxStatus.PENDING or (deposit.composed_at is not None and as_utc(deposit.composed_at) >= shown_since)
    )
    return {
        "id": new_id(),
        "patient_id": document.patient_id,
        "kind": OutboxKind.DOCUMENTS_RELEASED,
        "ref_id": document.document_id,
        "source": document.source,
        "status": OutboxStatus.COMPOSED if counted else OutboxStatus.PENDING,
        "composed_at": now if counted else None,
    }
