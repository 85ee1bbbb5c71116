"""From outbox rows to messages: coalesced deposits, preferences, retries, rejected addresses, crashes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from infra.services import dmp_environment
from pipeline.core.clock import PARIS, paris_date
from pipeline.core.settings import Settings
from pipeline.documents.stored import shred_document
from pipeline.documents.titles import document_titles
from pipeline.documents.versions import set_hold
from pipeline.index.models import Contact, Document, Notification, Outbox, Patient
from pipeline.notify.channels import channels_from_settings
from pipeline.notify.contacts import set_contact
from pipeline.notify.dispatch import dispatch
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.conftest import index_batch

pytestmark = pytest.mark.slow  # indexes sample batches and delivers through a local SMTP server

DMP = str(Path(sys.executable).with_name("dmp"))
LATER = dt.timedelta(hours=2)  # past the coalescing window and any retry backoff of these tests


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path / "home", smtp_starttls=False, notify_coalesce_seconds=300, **overrides)


def _runtime(settings: Settings) -> Runtime:
    return Runtime.from_settings(settings, prepare=True)


def _one_patient_batch(rt: Runtime, tmp_path: Path, documents: int, source: str = "hospital:CHU-NICE") -> tuple[str, list]:
    generate_samples(tmp_path / "batch", patients=1, documents=documents, seed=99, bad=False)
    indexed = index_batch(rt, tmp_path / "batch", source)
    (patient_id,) = {d.patient_id for d in indexed}
    return patient_id, indexed


def _set_contact(rt: Runtime, person_id: str, email: str | None = None, phone: str | None = None, **preferences: bool) -> None:
    set_contact(rt, person_id, email, phone)
    with rt.sessions() as session:
        patient = session.get(Patient, person_id)
        for name, value in preferences.items():
            setattr(patient, name, value)
        session.commit()


def _notifications(rt: Runtime) -> list[Notification]:
    with rt.sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.created_at)))


@pytest.fixture
def batch_of_300(tmp_path_factory):
    """300 documents for one patient, indexed once for the tests that read them (copied per test)."""
    root = tmp_path_factory.mktemp("batch300")
    rt = _runtime(_settings(root))
    patient_id, indexed = _one_patient_batch(rt, root, 300)
    rt.close()
    return root, patient_id, indexed


def test_a_batch_of_300_documents_for_one_patient_gives_one_email(batch_of_300, smtp_server):
    root, patient_id, indexed = batch_of_300
    settings = _settings(root, smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    rt = _runtime(settings)
    _set_contact(rt, patient_id, email="patient@example.org")
    report = dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + LATER)
    assert (report.composed, report.sent) == (1, 1)
    (message,) = smtp_server.mailbox.messages
    text = message.get_content()
    assert message["To"] == "patient@example.org"
    assert "300 nouveaux documents" in text and "CHU-NICE" in text
    assert not any(title and title in text for title in document_titles(rt, indexed).values())  # never medical content
    # A second pass sends nothing more.
    assert dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + LATER).sent == 0
    assert len(smtp_server.mailbox.messages) == 1
    rt.close()


def test_deposits_wait_for_the_coalescing_window_then_two_batches_make_one_message(tmp_path):
    settings = _settings(tmp_path)
    rt = _runtime(settings)
    generate_samples(tmp_path / "a", patients=1, documents=3, seed=5, bad=False)
    first = index_batch(rt, tmp_path / "a", "hospital:CHU-NICE")
    index_batch(rt, tmp_path / "a", "lab:BIO-LYON")  # a second batch for the same patient, from a lab, within the window
    channels = channels_from_settings(settings)
    assert dispatch(rt, channels).composed == 0  # the window has not passed
    report = dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER)
    assert (report.composed, report.sent) == (1, 1)
    (notification,) = _notifications(rt)
    assert notification.channel == "log" and notification.events == 2
    assert "6 nouveaux documents" in notification.body and "BIO-LYON" in notification.body and "CHU-NICE" in notification.body
    assert notification.patient_id == first[0].patient_id
    rt.close()


def test_a_deposit_waits_while_its_batch_still_has_documents_in_flight(tmp_path):
    from pipeline.index.models import BatchItem

    settings = _settings(tmp_path)
    rt = _runtime(settings)
    indexed = _one_patient_batch(rt, tmp_path, 3)[1]
    with rt.sessions() as session:
        item = session.get(BatchItem, indexed[0].batch_item_id)
        item.state = "processing"
        session.commit()
    assert dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + LATER).composed == 0
    rt.close()


def _received_feed(tmp_path):
    """One patient's feed of 4 lines received in chunks of 2, none stored yet: (settings, runtime, chunk ids)."""
    from pipeline.ingest.feed_intake import receive_feed
    from pipeline.samples.feed import write_feed

    settings = _settings(tmp_path, feed_chunk_lines=2)
    rt = _runtime(settings)
    write_feed(tmp_path / "f.csv", 4, patients=1, seed=3)
    chunks: list[str] = []
    receive_feed(rt, tmp_path / "f.csv", "insurer:CNAM", chunks.append)
    return settings, rt, chunks


def test_a_feeds_reimbursement_message_waits_until_its_chunks_are_stored(tmp_path):
    from pipeline.carehistory.feeds import process_chunk

    settings, rt, chunks = _received_feed(tmp_path)
    process_chunk(rt, chunks[0])  # the patient's lines and its outbox row, one chunk still to store
    channels = channels_from_settings(settings)
    assert dispatch(rt, channels).composed == 0
    assert dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER).composed == 1  # past the window, it waits no more
    rt.close()


def test_a_feeds_reimbursement_message_is_composed_once_the_feed_is_stored(tmp_path):
    from pipeline.carehistory.feeds import process_chunk

    settings, rt, chunks = _received_feed(tmp_path)
    for chunk_id in chunks:
        process_chunk(rt, chunk_id)
    assert dispatch(rt, channels_from_settings(settings)).composed == 1
    assert [n.kind for n in _notifications(rt)] == ["reimbursement_data"]
    rt.close()


def test_without_a_configured_channel_the_message_goes_to_the_local_log_sink(tmp_path):
    import json

    settings = _settings(tmp_path)
    rt = _runtime(settings)
    patient_id, _ = _one_patient_batch(rt, tmp_path, 2)
    _set_contact(rt, patient_id, email="patient@example.org")  # wants email, but no SMTP server is configured
    dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + LATER)
    logged = settings.resolved_notify_log_file().read_text()
    lines = [json.loads(line) for line in logged.splitlines()]
    assert len(lines) == 1 and "2 nouveaux documents" in lines[0]["body"]
    assert lines[0]["to"] == f"recipient:{patient_id}" and "patient@example.org" not in logged  # the address stays sealed
    rt.close()


def test_a_patient_who_turned_off_deposit_notifications_gets_none(tmp_path):
    settings = _settings(tmp_path)
    rt = _runtime(settings)
    patient_id, _ = _one_patient_batch(rt, tmp_path, 2)
    _set_contact(rt, patient_id, email="patient@example.org", notify_documents=False)
    report = dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + LATER)
    assert (report.composed, report.skipped) == (0, 1)
    with rt.sessions() as session:
        assert session.scalar(select(Outbox.status)) == "composed"  # the event is settled, not left pending
    rt.close()


def _hold(rt: Runtime, document_id: str, months: int) -> None:
    """The author holds the document until an announcement consultation `months` months after its deposit."""
    with rt.sessions() as session:
        document = session.get(Document, document_id)
        document.hidden_from_patient_until = document.created_at.date() + dt.timedelta(days=31 * months)
        session.commit()


def _deposit_message(rt: Runtime, settings: Settings, now: dt.datetime) -> str:
    dispatch(rt, channels_from_settings(settings), now)
    (notification,) = _notifications(rt)
    return notification.body


def test_a_document_held_for_an_announcement_is_not_counted_while_the_patient_may_not_see_it(tmp_path):
    settings = _settings(tmp_path)
    rt = _runtime(settings)
    _, indexed = _one_patient_batch(rt, tmp_path, 2)
    _hold(rt, indexed[0].id, months=3)
    assert "1 nouveau document a été ajouté" in _deposit_message(rt, settings, dt.datetime.now(dt.UTC) + LATER)
    rt.close()


def test_a_document_held_more_than_a_month_is_counted_once_the_policy_releases_it_a_month_after_deposit(tmp_path):
    settings = _settings(tmp_path)
    rt = _runtime(settings)
    _, indexed = _one_patient_batch(rt, tmp_path, 2)
    _hold(rt, indexed[0].id, months=3)  # announcement planned in three months: visible to the patient after one
    composed_after_the_month = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    assert "2 nouveaux documents" in _deposit_message(rt, settings, composed_after_the_month)
    rt.close()


def test_a_document_shredded_before_the_message_is_composed_is_not_counted(tmp_path):
    settings = _settings(tmp_path)
    rt = _runtime(settings)
    _, indexed = _one_patient_batch(rt, tmp_path, 3)
    assert shred_document(rt, indexed[0].id)
    assert "2 nouveaux documents" in _deposit_message(rt, settings, dt.datetime.now(dt.UTC) + LATER)
    rt.close()


def _hold_until(rt: Runtime, document_id: str, day: dt.date) -> None:
    with rt.sessions() as session:
        session.get(Document, document_id).hidden_from_patient_until = day
        session.commit()


def _held_deposit(rt: Runtime, tmp_path: Path, days: int) -> tuple[Document, dt.date]:
    """A deposit of two documents, the first held until `days` days from today: (it, that day)."""
    _, indexed = _one_patient_batch(rt, tmp_path, 2)
    release = paris_date() + dt.timedelta(days=days)
    _hold_until(rt, indexed[0].id, release)
    return indexed[0], release


@pytest.fixture
def sqlite_rt(tmp_path):
    rt = _runtime(_settings(tmp_path))
    yield rt
    rt.close()


def _noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), PARIS)


def _bodies(rt: Runtime) -> list[str]:
    return [notification.body for notification in _notifications(rt)]


SHOWN = "1 document déposé par CHU-NICE est désormais consultable"


def test_a_held_document_is_told_to_the_patient_once_on_the_day_its_hold_ends(rt, tmp_path):
    channels = channels_from_settings(rt.settings)
    _, release = _held_deposit(rt, tmp_path, days=5)
    dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER)  # the deposit's message: the other document only
    dispatch(rt, channels, _noon(release - dt.timedelta(days=1)))
    assert len(_bodies(rt)) == 1
    on_the_day, later = dispatch(rt, channels, _noon(release)), dispatch(rt, channels, _noon(release) + LATER)
    first, shown = _bodies(rt)
    assert "1 nouveau document a été ajouté" in first and SHOWN in shown
    assert (on_the_day.composed, later.composed) == (1, 0)


def test_a_document_held_past_a_month_is_told_when_the_policy_shows_it_a_month_after_deposit(sqlite_rt, tmp_path):
    rt, channels = sqlite_rt, channels_from_settings(sqlite_rt.settings)
    _held_deposit(rt, tmp_path, days=93)  # an announcement planned in three months: shown after one
    now = dt.datetime.now(dt.UTC)
    dispatch(rt, channels, now + LATER)
    dispatch(rt, channels, now + dt.timedelta(days=27))
    assert len(_bodies(rt)) == 1
    dispatch(rt, channels, now + dt.timedelta(days=33))
    assert SHOWN in _bodies(rt)[-1]


def test_a_hold_that_ends_before_the_deposit_is_told_is_counted_in_the_deposits_message_alone(sqlite_rt, tmp_path):
    rt, channels = sqlite_rt, channels_from_settings(sqlite_rt.settings)
    _, release = _held_deposit(rt, tmp_path, days=1)
    dispatch(rt, channels, _noon(release))  # the deposit told only now: both documents are shown
    dispatch(rt, channels, _noon(release) + LATER)
    (message,) = _bodies(rt)
    assert "2 nouveaux documents" in message


def test_a_document_its_author_releases_is_told_at_the_next_pass(sqlite_rt, tmp_path):
    rt, channels = sqlite_rt, channels_from_settings(sqlite_rt.settings)
    held, _ = _held_deposit(rt, tmp_path, days=20)
    dispatch(rt, channels, flush=True)  # the deposit's message, now, while the document is held
    assert set_hold(rt, held.source, held.source_document_id, None) is not None
    dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER)
    first, shown = _bodies(rt)
    assert "1 nouveau document a été ajouté" in first and SHOWN in shown


def test_a_held_document_withdrawn_before_its_release_is_never_told(sqlite_rt, tmp_path):
    rt, channels = sqlite_rt, channels_from_settings(sqlite_rt.settings)
    held, release = _held_deposit(rt, tmp_path, days=3)
    dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER)
    assert shred_document(rt, held.id)
    dispatch(rt, channels, _noon(release))
    assert len(_bodies(rt)) == 1


def test_a_release_older_than_a_week_is_not_told(sqlite_rt, tmp_path):
    """Every sweeper stopped for longer than that: stale news, and retention may have deleted its trace."""
    rt, channels = sqlite_rt, channels_from_settings(sqlite_rt.settings)
    _, release = _held_deposit(rt, tmp_path, days=3)
    dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER)
    dispatch(rt, channels, _noon(release + dt.timedelta(days=8)))
    assert len(_bodies(rt)) == 1


def test_smtp_down_for_a_while_then_up_delivers_every_message_once(tmp_path, smtp_server):
    settings = _settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    rt = _runtime(settings)
    generate_samples(tmp_path / "batch", patients=3, documents=9, seed=11, bad=False)
    patients = sorted({d.patient_id for d in index_batch(rt, tmp_path / "batch", "hospital:CHU-NICE")})
    for n, patient_id in enumerate(patients):
        _set_contact(rt, patient_id, email=f"p{n}@example.org")
    channels = channels_from_settings(settings)
    smtp_server.stop()
    now = dt.datetime.now(dt.UTC) + LATER
    down = dispatch(rt, channels, now)
    assert (down.composed, down.sent, down.retrying) == (3, 0, 3)
    assert {n.status for n in _notifications(rt)} == {"pending"} and {n.last_error for n in _notifications(rt)} != {None}
    again = dispatch(rt, channels, now + dt.timedelta(seconds=1))
    assert again.sent == 0  # still backing off: nothing hammered the server
    smtp_server.start()
    up = dispatch(rt, channels, now + LATER)
    assert up.sent == 3
    assert sorted(m["To"] for m in smtp_server.mailbox.messages) == ["p0@example.org", "p1@example.org", "p2@example.org"]
    assert dispatch(rt, channels, now + 2 * LATER).sent == 0
    assert len(smtp_server.mailbox.messages) == 3
    rt.close()


def test_an_address_refused_for_good_is_recorded_and_not_used_again(tmp_path, smtp_server):
    settings = _settings(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    rt = _runtime(settings)
    patient_id, _ = _one_patient_batch(rt, tmp_path, 2)
    _set_contact(rt, patient_id, email="nobody@example.org")
    smtp_server.mailbox.refuse = "550 5.1.1 no such user"
    report = dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + LATER)
    assert report.failed == 1
    (notification,) = _notifications(rt)
    assert (notification.status, notification.last_error) == ("failed", "smtp_recipient_refused")
    with rt.sessions() as session:
        assert session.get(Contact, patient_id).email_rejected == "smtp_recipient_refused"
    rt.close()


def test_a_sender_killed_between_send_and_mark_loses_nothing_and_the_gateway_sends_once(tmp_path, sms_gateway):
    settings = _settings(
        tmp_path, sms_gateway_url=f"http://127.0.0.1:{sms_gateway.port}/send", sms_gateway_token="t0ken", notify_lease_seconds=60
    )
    rt = _runtime(settings)
    patient_id, _ = _one_patient_batch(rt, tmp_path, 2)
    _set_contact(rt, patient_id, phone="+33612345678", notify_sms=True, notify_email=False)
    sender = subprocess.Popen([DMP, "notify", "run", "--flush"], env=dmp_environment(settings), start_new_session=True)
    # The gateway takes the text, then the sender dies before it hears the answer (so before it marks the message sent).
    sms_gateway.on_request = lambda _request: os.killpg(sender.pid, signal.SIGKILL)
    assert sender.wait(timeout=60) == -signal.SIGKILL
    (notification,) = _notifications(rt)
    assert notification.status == "sending"  # claimed, not marked: the lease will run out
    sms_gateway.on_request = None
    assert dispatch(rt, channels_from_settings(settings), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)).sent == 1
    assert len(sms_gateway.requests) == 2  # sent again with the same idempotency key ...
    assert len(sms_gateway.delivered) == 1  # ... which the gateway de-duplicates: one SMS
    assert {r["key"] for r in sms_gateway.requests} == {notification.id}
    assert sms_gateway.requests[0]["auth"] == "Bearer t0ken"
    assert _notifications(rt)[0].status == "sent"
    rt.close()


def test_a_pass_looks_only_at_patients_whose_deposits_may_be_told(tmp_path, monkeypatch):
    """Deposits inside the coalescing window, or whose batch is still in flight, do not make a pass open a
    transaction for their patient; once told they may be, the patient is looked at and the message composed."""
    import pipeline.notify.dispatch as dispatch_module
    from pipeline.index.models import BatchItem

    looked_at: list[str] = []
    real = dispatch_module._compose_patient
    monkeypatch.setattr(
        dispatch_module,
        "_compose_patient",
        lambda rt, session, patient_id, *rest: looked_at.append(patient_id) or real(rt, session, patient_id, *rest),
    )
    settings = _settings(tmp_path)
    rt = _runtime(settings)
    patient_id, indexed = _one_patient_batch(rt, tmp_path, 3)
    channels = channels_from_settings(settings)
    assert dispatch(rt, channels).composed == 0  # inside the window
    with rt.sessions() as session:
        item = session.get(BatchItem, indexed[0].batch_item_id)
        item.state = "processing"
        session.commit()
    assert dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER).composed == 0  # its batch in flight
    assert looked_at == []
    with rt.sessions() as session:
        session.get(BatchItem, indexed[0].batch_item_id).state = "indexed"
        session.commit()
    assert dispatch(rt, channels, dt.datetime.now(dt.UTC) + LATER).composed == 1
    assert looked_at == [patient_id]
    rt.close()
