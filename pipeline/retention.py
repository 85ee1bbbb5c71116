"""Retention: what the store and the index must stop keeping.

- care events older than the 24-month window (bounded batches, each its own short transaction,
  so ingestion and reads are not blocked);
- closed records 10 years after closure: record key, documents, objects, care events, index rows;
- quarantine copies of rejected documents past their date;
- idempotency keys of HTTP submissions after IDEMPOTENCY_DAYS (a retry comes within hours);
- upload objects an API process killed mid-upload left in the inbox (plaintext), a day on.
Everything removed is logged by id.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update

from pipeline.carehistory.history import window_start
from pipeline.core.clock import PARIS, paris_date
from pipeline.core.metrics import retention_runs
from pipeline.documents.stored import destroy_record
from pipeline.index.models import BatchItem, CareEvent, Contact, Document, IdempotencyRecord, Notification, Outbox, Patient, RecordKey
from pipeline.index.repo import affected
from pipeline.index.states import ITEM_FINAL, JobName, NotificationStatus, OutboxStatus, RecordStatus
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
NOTIFICATION_FINAL = (NotificationStatus.SENT, NotificationStatus.FAILED)
RECORD_RETENTION_YEARS = 10
IDEMPOTENCY_DAYS = 7
ABANDONED_UPLOAD_AGE = dt.timedelta(days=1)


@dataclass
class RetentionReport:
    care_events_deleted: int = 0
    records_destroyed: list[str] = field(default_factory=list)
    quarantine_purged: list[str] = field(default_factory=list)
    notifications_deleted: int = 0
    idempotency_keys_deleted: int = 0
    uploads_purged: list[str] = field(default_factory=list)
    interrupted_writes_purged: int = 0


# Care lines deleted per transaction, and the pause after each batch as a share of the batch's own time: the
# prune runs at night and need not be fast, while the care history is read all along. Short batches, each
# followed by a rest as long as itself, keep a reader's slowest reads within a few times its usual (`bench
# retention`: a reader in a process of its own, p99 during the prune against p99 idle).
PRUNE_BATCH = 1000
PRUNE_PAUSE = 1.0


def prune_care_events(rt: Runtime, as_of: dt.date, batch_size: int = PRUNE_BATCH, pause: float = PRUNE_PAUSE) -> int:
    """Delete care events whose care date is before the window, `batch_size` rows per transaction (one statement
    each, oldest first), resting `pause` times each batch's duration after it."""
    cutoff = window_start(as_of)
    oldest = select(CareEvent.id).where(CareEvent.care_date < cutoff).order_by(CareEvent.care_date).limit(batch_size)
    statement = delete(CareEvent).where(CareEvent.id.in_(oldest.scalar_subquery()))
    deleted = 0
    while True:
        began = time.monotonic()
        with rt.sessions() as session:
            count = affected(session.execute(statement))
            session.commit()
        if count == 0:
            return deleted
        deleted += count
        log.info("care history: %d events before %s deleted", count, cutoff)
        if pause > 0:
            time.sleep(pause * (time.monotonic() - began))


def _ten_years_before(today: dt.date) -> dt.datetime:
    try:
        day = today.replace(year=today.year - RECORD_RETENTION_YEARS)
    except ValueError:  # 29 February
        day = today.replace(year=today.year - RECORD_RETENTION_YEARS, day=28)
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def destroy_expired_records(rt: Runtime, today: dt.date) -> list[str]:
    """Destroy records closed more than 10 years ago: keys first, then objects and rows."""
    with rt.sessions() as session:
        closed_long_ago = (Patient.status == RecordStatus.CLOSED, Patient.closed_at < _ten_years_before(today))
        expired = session.scalars(select(Patient.id).where(*closed_long_ago)).all()
    for patient_id in expired:
        shredded = destroy_record(rt, patient_id)
        with rt.sessions() as session:
            ins = session.scalar(select(Patient.ins).where(Patient.id == patient_id))
            session.execute(update(BatchItem).where(BatchItem.patient_ins == ins).values(patient_ins=None, title_sealed=None))
            session.execute(delete(Document).where(Document.patient_id == patient_id))
            session.execute(delete(CareEvent).where(CareEvent.patient_id == patient_id))
            session.execute(delete(Outbox).where(Outbox.patient_id == patient_id))
            session.execute(delete(Notification).where(Notification.patient_id == patient_id))
            session.execute(delete(Contact).where(Contact.id == patient_id))
            session.execute(delete(RecordKey).where(RecordKey.patient_id == patient_id))
            session.execute(delete(Patient).where(Patient.id == patient_id))
            session.commit()
        log.info("record of patient %s destroyed (%d documents shredded)", patient_id, shredded)
    return list(expired)


def purge_quarantine(rt: Runtime, today: dt.date, batch_size: int = 500) -> list[str]:
    """Delete expired quarantine objects, in short transactions of `batch_size`; return the item ids."""
    purged: list[str] = []
    while True:
        with rt.sessions() as session:
            items = session.scalars(
                select(BatchItem).where(BatchItem.quarantine_key.is_not(None), BatchItem.quarantine_until < today).limit(batch_size)
            ).all()
            if not items:
                return purged
            for item in items:
                # Object first: a crash between the two leaves a row pointing at nothing, never bytes without a row.
                rt.store.delete(item.quarantine_key or "")
                item.quarantine_key, item.quarantine_until = None, None
                item.quarantine_master_key_id, item.quarantine_wrapped_key = None, None
                purged.append(item.id)
                log.info("quarantine of item %s removed", item.id)
            session.commit()


def prune_notifications(rt: Runtime, today: dt.date) -> int:
    """Delete messages sent or failed more than DMP_NOTIFY_KEEP_DAYS ago, and the events they reported."""
    cutoff = dt.datetime.combine(today - dt.timedelta(days=rt.settings.notify_keep_days), dt.time(), tzinfo=dt.UTC)
    with rt.sessions() as session:
        deleted = affected(
            session.execute(delete(Notification).where(Notification.status.in_(NOTIFICATION_FINAL), Notification.created_at < cutoff))
        )
        session.execute(delete(Outbox).where(Outbox.status == OutboxStatus.COMPOSED, Outbox.composed_at < cutoff))
        session.commit()
    return deleted


def run_retention(rt: Runtime, today: dt.date) -> RetentionReport:
    """Everything retention does, in order; safe to run while ingestion and reads go on."""
    report = RetentionReport()
    report.care_events_deleted = prune_care_events(rt, today)
    report.records_destroyed = destroy_expired_records(rt, today)
    report.quarantine_purged = purge_quarantine(rt, today)
    report.notifications_deleted = prune_notifications(rt, today)
    report.idempotency_keys_deleted = prune_idempotency_keys(rt, dt.datetime.now(dt.UTC))
    report.uploads_purged = purge_abandoned_uploads(rt, dt.datetime.now(dt.UTC))
    report.interrupted_writes_purged = purge_interrupted_writes(rt, dt.datetime.now(dt.UTC))
    return report


def purge_interrupted_writes(rt: Runtime, now: dt.datetime) -> int:
    """Remove what object writes killed more than ABANDONED_UPLOAD_AGE ago left in the store, out of every
    listing: a file store's temporary files, an S3 bucket's multipart uploads never completed. They may hold an
    inbox's plaintext; a write still going on is younger than that."""
    purged = rt.store.purge_interrupted(now - ABANDONED_UPLOAD_AGE)
    if purged:
        log.info("%d interrupted object writes removed", purged)
    return purged


def purge_abandoned_uploads(rt: Runtime, now: dt.datetime) -> list[str]:
    """Delete upload objects older than ABANDONED_UPLOAD_AGE that no unfinished item still needs.

    An upload's leftovers are deleted before its answer; only an API process killed mid-upload
    leaves some, and they hold plaintext documents. An uploaded part adopted by an item waiting
    for a worker is kept, however old.
    """
    from pipeline.core.inbox import UPLOADS, upload_time

    with rt.sessions() as session:
        waiting = select(BatchItem.inbox_key).where(BatchItem.inbox_key.like(UPLOADS + "%"), BatchItem.state.not_in(ITEM_FINAL))
        needed = set(session.scalars(waiting))
    purged = []
    for key in rt.store.list_keys(UPLOADS):
        started = upload_time(key)
        if started is not None and started < now - ABANDONED_UPLOAD_AGE and key not in needed:
            rt.store.delete(key)
            purged.append(key)
            log.info("abandoned upload object %s removed", key)
    return purged


def prune_idempotency_keys(rt: Runtime, now: dt.datetime) -> int:
    """Forget the idempotency keys (and their stored answers) older than IDEMPOTENCY_DAYS."""
    with rt.sessions() as session:
        cutoff = now - dt.timedelta(days=IDEMPOTENCY_DAYS)
        deleted = affected(
            session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff), execution_options={"synchronize_session": False}
            )
        )
        session.commit()
    if deleted:
        log.info("idempotency keys: %d older than %d days deleted", deleted, IDEMPOTENCY_DAYS)
    return deleted


RUN_AT = dt.time(3, 0)  # Europe/Paris


def next_run_delay_ms(now: dt.datetime) -> int:
    """Milliseconds from `now` to the next 03:00 in Europe/Paris."""
    local = now.astimezone(PARIS)
    target = dt.datetime.combine(local.date(), RUN_AT, tzinfo=PARIS)
    if target <= local:
        target = dt.datetime.combine(local.date() + dt.timedelta(days=1), RUN_AT, tzinfo=PARIS)
    return max(0, int((target - local).total_seconds() * 1000))


RETRY_AFTER = dt.timedelta(minutes=10)  # a failed run (not an outage: the actor waits those out) tries again


def run_recorded(rt: Runtime, job: JobName, day: dt.date) -> bool:
    """Whether `job` already ran to the end for `day`."""
    from pipeline.index.models import JobRun

    with rt.sessions() as session:
        return session.scalar(select(JobRun.id).where(JobRun.job == job, JobRun.run_date == day)) is not None


def record_run(rt: Runtime, job: JobName, day: dt.date) -> bool:
    """Record that `job` ran to the end for `day`; False if another copy recorded it first."""
    from sqlalchemy.exc import IntegrityError

    from pipeline.index.base import new_id
    from pipeline.index.models import JobRun

    with rt.sessions() as session:
        session.add(JobRun(id=new_id(), job=job, run_date=day))
        try:
            session.commit()
        except IntegrityError:
            return False
    return True


def scheduled_retention(rt: Runtime, reschedule: Callable[[int], object]) -> RetentionReport | None:
    """The daily job: run once per Paris day, then schedule the next run at 03:00.

    The day is recorded only once its run went through, so a failed run is tried again
    (`RETRY_AFTER` later; an outage is waited out by the actor) and the chain never stops: a retry
    that lands on the next day runs that day's retention. A copy of the schedule that finds the day
    recorded does nothing and does not reschedule itself, so duplicate schedules die out instead of
    multiplying; runs are idempotent, so two copies running the same day do no harm.
    """
    from pipeline.core.outage import failure_code, outage_of

    today = paris_date()
    if run_recorded(rt, JobName.RETENTION, today):
        return None
    try:
        report = run_retention(rt, today)
    except Exception as failure:
        if outage_of(failure) is not None:
            raise
        log.error("retention run failed (%s); tried again in %s", failure_code(failure), RETRY_AFTER)
        retention_runs.labels("failure").inc()
        reschedule(int(RETRY_AFTER.total_seconds() * 1000))
        return None
    retention_runs.labels("success").inc()
    if record_run(rt, JobName.RETENTION, today):
        reschedule(next_run_delay_ms(dt.datetime.now(dt.UTC)))
    return report


def resume_delay_ms(rt: Runtime, now: dt.datetime) -> int:
    """When a schedule whose message was lost should run: at once if today's run is due and not
    recorded, else at the next 03:00."""
    local = now.astimezone(PARIS)
    due = local.time() >= RUN_AT and not run_recorded(rt, JobName.RETENTION, local.date())
    return 0 if due else next_run_delay_ms(now)
