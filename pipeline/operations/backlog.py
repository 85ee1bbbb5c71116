"""What is waiting or stuck, read from the index: the queries behind the scrape-time metrics and the
alert on stuck items. Plain functions over a Session."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.access.audit import BrokenLink, verify
from pipeline.index.models import BatchItem, JobRun, Notification, Outbox
from pipeline.index.states import ITEM_FINAL, ItemState, JobName

RETENTION_JOB = JobName.RETENTION
AUDIT_VERIFY_OK = JobName.AUDIT_VERIFY_OK
AUDIT_VERIFY_BROKEN = JobName.AUDIT_VERIFY_BROKEN


def unfinished_items(session: Session) -> dict[str, int]:
    """Batch items not yet final, counted by state (`queued`, `processing`)."""
    query = select(BatchItem.state, func.count()).where(BatchItem.state.not_in(ITEM_FINAL)).group_by(BatchItem.state)
    return {state: count for state, count in session.execute(query)}


def stuck_items_count(session: Session, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Items in `processing` whose latest attempt started more than `older_than` ago."""
    since = (now or dt.datetime.now(dt.UTC)) - older_than
    query = select(func.count()).select_from(BatchItem).where(BatchItem.state == ItemState.PROCESSING, BatchItem.started_at < since)
    return session.scalar(query) or 0


def outbox_pending(session: Session) -> int:
    """Events not yet turned into messages."""
    return session.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == "pending")) or 0


def notifications_by_status(session: Session) -> dict[str, int]:
    """Notifications kept (DMP_NOTIFY_KEEP_DAYS), by status: pending, sending, sent, failed."""
    query = select(Notification.status, func.count()).group_by(Notification.status)
    return {status: count for status, count in session.execute(query)}


def last_job_run(session: Session, job: str) -> dt.datetime | None:
    """When `job` last ran to the end (recorded in job_runs), or None."""
    return session.scalar(select(func.max(JobRun.started_at)).where(JobRun.job == job))


def record_audit_verdict(session: Session, broken: bool, day: dt.date) -> None:
    """Keep the verdict of a whole-log `dmp audit verify` (the latest of the day) for the
    `dmp_audit_chain_broken` metric and its alert."""
    from sqlalchemy import delete

    from pipeline.index.base import new_id

    session.execute(delete(JobRun).where(JobRun.job.in_((AUDIT_VERIFY_OK, AUDIT_VERIFY_BROKEN)), JobRun.run_date == day))
    session.add(JobRun(id=new_id(), job=AUDIT_VERIFY_BROKEN if broken else AUDIT_VERIFY_OK, run_date=day))
    session.commit()


def verify_audit_log(session: Session, key: bytes, day: dt.date) -> list[BrokenLink]:
    """Check the whole audit log and record the verdict for `day` (`dmp audit verify`, the scheduler's
    daily run): the first broken link of each broken chain, empty when every chain is intact."""
    broken = verify(session, key)
    record_audit_verdict(session, bool(broken), day)
    return broken
