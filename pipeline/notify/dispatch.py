"""From outbox rows to delivered messages, exactly once per event as the patient sees it.

Two steps, each safe to run in any number of processes at once:

- compose: due outbox rows become `notifications` rows (one per recipient and channel) and are marked
  `composed` in the same transaction, guarded by a compare-and-set on their status: an event is
  composed once. Deposits wait until their batch has no document left in flight and the coalescing
  window since the patient's oldest pending deposit has passed, then all become one message.
- deliver: a due message is claimed with a lease (compare-and-set again), handed to its channel with
  its id as idempotency key, then marked sent. A process that dies between the send and the mark
  leaves the lease to expire; the next pass sends again with the same key. The SMS gateway drops
  the duplicate; an email may arrive twice within `notify_lease_seconds` (same Message-ID).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, func, or_, select, update
from sqlalchemy.orm import Session

from pipeline.access.gate import Decisions
from pipeline.access.listing import visible_count
from pipeline.access.policy import Action, Actor, ActorKind
from pipeline.access.recordview import load_record
from pipeline.core.clock import as_utc, paris_date
from pipeline.core.metrics import notifications_sent
from pipeline.core.sealedfields import SealedFieldError, address_context, open_text, seal_text
from pipeline.index.base import new_id
from pipeline.index.models import BatchItem, Contact, Document, Feed, FeedChunk, Notification, Outbox, Patient
from pipeline.index.repo import affected
from pipeline.index.states import ITEM_IN_FLIGHT, ChannelName, ChunkState, NotificationStatus, OutboxKind, OutboxStatus
from pipeline.notify.channels import Channel, DeliveryError, Message
from pipeline.notify.compose import Event, compose
from pipeline.notify.contacts import opening_key, read_contact
from pipeline.notify.releases import queue_releases
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

URGENT = frozenset({OutboxKind.EMERGENCY_ACCESS, OutboxKind.EMERGENCY_ACCESS_TO_ATTENDING})
ALWAYS = frozenset({OutboxKind.FIRST_ACCESS, OutboxKind.EMERGENCY_ACCESS, OutboxKind.EMERGENCY_ACCESS_TO_ATTENDING})
# Events about documents: their message gives how many the patient may see, and none is sent for none.
COUNTED = frozenset({OutboxKind.DOCUMENTS_ADDED, OutboxKind.DOCUMENTS_RELEASED})
ADDRESS_CODES = frozenset({"smtp_recipient_refused", "sms_number_rejected", "invalid_address"})
PAGE = 200
MAX_BACKOFF_SECONDS = 3600


@dataclass
class DispatchReport:
    composed: int = 0  # messages created
    skipped: int = 0  # events the recipient chose not to hear about
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def dispatch(
    rt: Runtime, channels: Mapping[ChannelName, Channel], now: dt.datetime | None = None, *, flush: bool = False
) -> DispatchReport:
    """One pass: queue the events of documents whose hold has ended (pipeline/notify/releases.py), compose
    what is due, then deliver what is due. `flush` ignores the coalescing wait."""
    now = now or dt.datetime.now(dt.UTC)
    report = DispatchReport()
    queue_releases(rt, now)
    compose_due(rt, now, report, flush=flush)
    deliver_due(rt, channels, now, report)
    return report


# ---------------------------------------------------------------------------------------------
# Compose


def compose_due(rt: Runtime, now: dt.datetime, report: DispatchReport, *, flush: bool = False) -> None:
    due = _due_rows(rt, now, flush)
    ready = [] if flush else [_may_compose(rt, now)]
    with rt.sessions() as session:
        patients = session.scalars(select(Outbox.patient_id).where(*due, *ready).distinct().limit(10 * PAGE)).all()
    for patient_id in patients:
        with rt.sessions() as session:
            if _compose_patient(rt, session, patient_id, now, report, flush):
                session.commit()
            else:
                session.rollback()


def _due_rows(rt: Runtime, now: dt.datetime, flush: bool) -> list[ColumnElement[bool]]:
    """Pending outbox rows, less the feeds' that wait: a feed's "new reimbursement data" is told once its
    lines are all stored (intake done, no chunk left to store), not while its chunks go in, or once the
    coalescing window has passed (a feed whose intake must re-send some chunks holds no message for ever)."""
    if flush:
        return [Outbox.status == OutboxStatus.PENDING]
    unfinished = exists().where(FeedChunk.feed_id == Feed.id, FeedChunk.state != ChunkState.DONE)
    feed_open = exists().where(Feed.id == Outbox.ref_id, or_(Feed.sent_at.is_(None), unfinished))
    window = now - dt.timedelta(seconds=rt.settings.notify_coalesce_seconds)
    waits = (Outbox.kind == OutboxKind.REIMBURSEMENT_DATA) & (Outbox.created_at > window) & feed_open
    return [Outbox.status == OutboxStatus.PENDING, ~waits]


def _may_compose(rt: Runtime, now: dt.datetime) -> ColumnElement[bool]:
    """The rows that may make a patient's message in this pass: a deposit once the coalescing window since it
    passed and its batch has no document in flight, any other row. Which patients a pass looks at, not what it
    composes (`_compose_patient` decides for each, over all its rows): during an ingestion every patient has
    deposits waiting, and a pass that opened a transaction for each of them found nothing to do."""
    window = now - dt.timedelta(seconds=rt.settings.notify_coalesce_seconds)
    in_flight = exists().where(BatchItem.batch_id == Outbox.ref_id, BatchItem.state.in_(ITEM_IN_FLIGHT))
    return (Outbox.kind != OutboxKind.DOCUMENTS_ADDED) | ((Outbox.created_at <= window) & ~in_flight)


def _compose_patient(rt: Runtime, session: Session, patient_id: str, now: dt.datetime, report: DispatchReport, flush: bool) -> bool:
    patient = session.get(Patient, patient_id)
    due = select(Outbox).where(Outbox.patient_id == patient_id, *_due_rows(rt, now, flush))
    rows = session.scalars(due.order_by(Outbox.created_at)).all()
    if patient is None or not rows:
        return False
    groups = [[row] for row in rows if row.kind not in COUNTED]
    if released := [row for row in rows if row.kind == OutboxKind.DOCUMENTS_RELEASED]:
        groups.append(released)  # released together (at midnight, mostly): one message
    deposits = [row for row in rows if row.kind == OutboxKind.DOCUMENTS_ADDED]
    if deposits:
        oldest = as_utc(deposits[0].created_at)
        settled = flush or oldest + dt.timedelta(seconds=rt.settings.notify_coalesce_seconds) <= now
        if settled and (flush or not _in_flight(session, patient_id, [row.ref_id for row in deposits])):
            groups.append(deposits)
    for group in groups:
        ids = [row.id for row in group]
        compose_them = (
            update(Outbox)
            .where(Outbox.id.in_(ids), Outbox.status == OutboxStatus.PENDING)
            .values(status=OutboxStatus.COMPOSED, composed_at=now)
        )
        claimed = affected(session.execute(compose_them))
        if claimed != len(ids):
            return False  # another dispatcher composed some of them: leave it all to that one
        messages = _messages_for(rt, session, patient, group, now)
        if not messages:
            report.skipped += 1
        session.add_all(messages)
        report.composed += len(messages)
    return True


def _in_flight(session: Session, patient_id: str, batch_ids: list[str]) -> bool:
    """Does any of these batches still have a document being processed? (Then wait: one message per batch.)"""
    busy = select(func.count()).select_from(BatchItem).where(BatchItem.batch_id.in_(batch_ids), BatchItem.state.in_(ITEM_IN_FLIGHT))
    return bool(session.scalar(busy))


def _documents_told(session: Session, patient_id: str, group: list[Outbox], today: dt.date) -> int:
    """The documents the group's events are about (those their batches added, or those released) that the
    patient may see today, as the access policy decides: telling of a document their author still holds until
    an announcement would announce it, and a shredded one is no longer part of the record. One grouped
    query, each group decided once."""
    record = load_record(session, patient_id)
    if record is None:
        return 0
    patient = Actor(patient_id, ActorKind.PATIENT)
    decisions = Decisions(patient, Action.READ_METADATA, record, today=today, emergency_reason=None)
    refs = [row.ref_id for row in group]
    if group[0].kind == OutboxKind.DOCUMENTS_RELEASED:
        about = Document.id.in_(refs)
    else:
        about = Document.batch_item_id.in_(select(BatchItem.id).where(BatchItem.batch_id.in_(refs)))
    return visible_count(session, decisions, [Document.patient_id == patient_id, Document.live, about])


def _wanted(patient: Patient, kind: OutboxKind) -> bool:
    if kind in ALWAYS:
        return True
    return {
        OutboxKind.DOCUMENTS_ADDED: patient.notify_documents,
        OutboxKind.DOCUMENTS_RELEASED: patient.notify_documents,
        OutboxKind.REIMBURSEMENT_DATA: patient.notify_reimbursements,
        OutboxKind.ACCESS: patient.notify_every_access,
    }.get(kind, True)


def _messages_for(rt: Runtime, session: Session, patient: Patient, group: list[Outbox], now: dt.datetime) -> list[Notification]:
    first = group[0]
    if not _wanted(patient, first.kind):
        return []
    to_attending = first.kind == OutboxKind.EMERGENCY_ACCESS_TO_ATTENDING
    recipient = patient.attending_physician_id if to_attending else patient.id
    if recipient is None:
        return []
    counted = first.kind in COUNTED
    count = _documents_told(session, patient.id, group, paris_date(now)) if counted else 1
    if counted and count == 0:
        return []  # every document of those batches was rejected, is held or shredded: nothing to tell
    event = Event(first.kind, as_utc(first.created_at), tuple(row.source for row in group), first.detail, count)
    subject, body = compose(event, rt.settings.notify_record_url)
    contact = read_contact(rt, session, recipient)
    wants_email, wants_sms = (True, True) if to_attending else (patient.notify_email, patient.notify_sms)
    routes: list[tuple[ChannelName, str | None]] = []
    if wants_email and contact.email and not contact.email_rejected:
        routes.append((ChannelName.EMAIL, contact.email))
    if wants_sms and contact.phone and not contact.phone_rejected:
        routes.append((ChannelName.SMS, contact.phone))
    if not routes:
        routes.append((ChannelName.LOG, None))  # nowhere to send it: keep it visible in the local sink rather than drop it
    key = opening_key(rt, session, recipient) if any(address for _, address in routes) else None
    ids = [new_id() for _ in routes]
    return [
        Notification(
            id=notification_id,
            patient_id=patient.id,
            recipient_id=recipient,
            kind=first.kind,
            channel=channel,
            address_sealed=seal_text(key, address, address_context(notification_id, recipient)) if key else None,
            subject=subject,
            body=body,
            events=len(group),
            status=NotificationStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
        )  # fmt: skip
        for notification_id, (channel, address) in zip(ids, routes, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# Deliver


def _due(now: dt.datetime) -> ColumnElement[bool]:
    return or_(
        (Notification.status == NotificationStatus.PENDING) & (Notification.next_attempt_at <= now),
        (Notification.status == NotificationStatus.SENDING) & (Notification.lease_until < now),
    )


def deliver_due(rt: Runtime, channels: Mapping[ChannelName, Channel], now: dt.datetime, report: DispatchReport) -> None:
    """Send every due message once (urgent kinds first)."""
    with rt.sessions() as session:
        urgent_first = Notification.kind.in_(URGENT).desc()
        ids = session.scalars(select(Notification.id).where(_due(now)).order_by(urgent_first, Notification.created_at).limit(PAGE)).all()
    for notification_id in ids:
        _deliver_one(rt, channels, notification_id, now, report)


def _deliver_one(
    rt: Runtime, channels: Mapping[ChannelName, Channel], notification_id: str, now: dt.datetime, report: DispatchReport
) -> None:
    lease = now + dt.timedelta(seconds=rt.settings.notify_lease_seconds)
    with rt.sessions() as session:
        claim = update(Notification).where(Notification.id == notification_id, _due(now))
        claimed = claim.values(status=NotificationStatus.SENDING, lease_until=lease, attempts=Notification.attempts + 1)
        if affected(session.execute(claimed)) != 1:
            return  # another dispatcher has it
        session.commit()
        notification = session.get(Notification, notification_id)
        assert notification is not None
        channel = channels.get(notification.channel) or channels[ChannelName.LOG]
        try:
            # The local log sink is a file on disk: it names the recipient, never their address (sealed at rest).
            address = _address(rt, session, notification) if channel.name != ChannelName.LOG else None
            channel.send(
                Message(notification.id, address or f"recipient:{notification.recipient_id}", notification.subject, notification.body)
            )
        except DeliveryError as failure:
            _failed(rt, session, notification, failure, now, report)
        except Exception as failure:  # a channel bug must not stop the other messages
            log.error("notification %s: unexpected %s", notification_id, type(failure).__name__)
            _failed(rt, session, notification, DeliveryError("unexpected_error", False), now, report)
        else:
            notification.status, notification.sent_at = NotificationStatus.SENT, now
            notification.lease_until, notification.last_error = None, None
            report.sent += 1
            notifications_sent.labels(notification.channel, "sent").inc()
        session.commit()


def _address(rt: Runtime, session: Session, notification: Notification) -> str | None:
    """The message's address, opened with its recipient's contact key; DeliveryError if it does not open."""
    if notification.address_sealed is None:
        return None
    key = opening_key(rt, session, notification.recipient_id)
    try:
        if key is None:
            raise SealedFieldError("no key")
        return open_text(key, notification.address_sealed, address_context(notification.id, notification.recipient_id))
    except SealedFieldError:
        raise DeliveryError("address_unreadable", True) from None  # the record (or contact) was destroyed


def _failed(
    rt: Runtime, session: Session, notification: Notification, failure: DeliveryError, now: dt.datetime, report: DispatchReport
) -> None:
    notification.last_error, notification.lease_until = failure.code, None
    if failure.permanent or notification.attempts >= rt.settings.notify_max_attempts:
        notification.status = NotificationStatus.FAILED
        report.failed += 1
        notifications_sent.labels(notification.channel, "failed").inc()
        log.warning("notification %s failed for good: %s", notification.id, failure.code)
        if failure.permanent and failure.code in ADDRESS_CODES:
            _reject_address(rt, session, notification, failure.code)
        return
    notification.status = NotificationStatus.PENDING
    delay = min(MAX_BACKOFF_SECONDS, 5 * 2 ** (notification.attempts - 1)) * random.uniform(0.8, 1.2)
    notification.next_attempt_at = now + dt.timedelta(seconds=delay)
    report.retrying += 1
    notifications_sent.labels(notification.channel, "retrying").inc()


def _reject_address(rt: Runtime, session: Session, notification: Notification, code: str) -> None:
    """Record on the contact that this address was refused, so settings show it and it is not used again
    (unless the person changed it since)."""
    contact = session.get(Contact, notification.recipient_id)
    if contact is None:
        return
    current = read_contact(rt, session, notification.recipient_id)
    refused = _address(rt, session, notification)
    if notification.channel == ChannelName.EMAIL and current.email == refused:
        contact.email_rejected = code
    if notification.channel == ChannelName.SMS and current.phone == refused:
        contact.phone_rejected = code
