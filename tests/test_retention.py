"""Retention (pipeline/retention.py): what each purge removes and what it keeps, and the daily schedule.

Gathered from the modules of what each purge touches; the helpers that build their rows stay there.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading

import pytest
from sqlalchemy import func, select, update

from pipeline import retention
from pipeline.core.clock import paris_date
from pipeline.documents.process import mark_retries_exhausted
from pipeline.index import repo
from pipeline.index.models import CareEvent, Contact, IdempotencyRecord, Notification, Outbox, Patient
from pipeline.ingest import uploads
from pipeline.ingest.idempotency import Replay
from pipeline.ingest.uploads import receive_multipart_batch
from pipeline.notify.channels import channels_from_settings
from pipeline.notify.contacts import set_contact
from pipeline.notify.dispatch import dispatch
from pipeline.retention import (
    destroy_expired_records,
    prune_care_events,
    prune_idempotency_keys,
    prune_notifications,
    purge_abandoned_uploads,
    purge_quarantine,
)
from tests.carehistory.test_feed import ALICE, BOB, TODAY, _count, _csv, _feed, _history, _line
from tests.documents import test_process
from tests.documents.test_process import _item
from tests.ingest import test_uploads
from tests.ingest.test_idempotency import ANSWER, _claim, _finish
from tests.ingest.test_uploads import HEADER, ROW, _multipart, _Stream
from tests.notify.test_dispatch import _notifications, _one_patient_batch, _runtime, _settings

# The fixtures those tests use, from their modules of origin.
small_batch = test_process.small_batch
received = test_process.received
runtime = test_uploads.runtime


@pytest.fixture
def small_feed_chunks(rt):
    rt.settings.feed_chunk_lines = 3  # several chunks even for the small feeds written here (as in test_feed.py)


# ---------------------------------------------------------------------------------------------
# The daily schedule
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def failing_once(monkeypatch):
    runs: list[str] = []
    real = retention.run_retention

    def run(rt, today):  # noqa: ANN001
        runs.append("run")
        if len(runs) == 1:
            raise RuntimeError("the object store refused a delete")
        return real(rt, today)

    monkeypatch.setattr(retention, "run_retention", run)
    return runs


def test_a_failed_run_is_tried_again_and_the_next_day_s_run_is_scheduled_once_it_succeeds(rt, failing_once):
    delays: list[int] = []
    assert retention.scheduled_retention(rt, delays.append) is None
    assert delays == [int(retention.RETRY_AFTER.total_seconds() * 1000)]
    assert not retention.run_recorded(rt, "retention", paris_date())

    assert retention.scheduled_retention(rt, delays.append) is not None  # the retry
    assert len(failing_once) == 2
    assert retention.run_recorded(rt, "retention", paris_date())
    assert 0 < delays[-1] <= 24 * 3600 * 1000  # the next 03:00


def test_a_second_copy_of_the_schedule_finds_the_day_done_and_dies_out(rt):
    delays: list[int] = []
    retention.scheduled_retention(rt, delays.append)
    assert retention.scheduled_retention(rt, delays.append) is None
    assert len(delays) == 1


# ---------------------------------------------------------------------------------------------
# Documents: quarantine copies and abandoned uploads
# ---------------------------------------------------------------------------------------------


def test_retention_removes_quarantine_copies_once_their_days_are_over(received):
    rt, _, sent = received
    mark_retries_exhausted(rt, sent[0])
    item = _item(rt, sent[0])
    assert rt.store.exists(item.quarantine_key)
    assert purge_quarantine(rt, item.quarantine_until) == []  # still within its days
    assert purge_quarantine(rt, item.quarantine_until + dt.timedelta(days=1)) == [item.id]
    assert not rt.store.exists(item.quarantine_key)
    assert _item(rt, sent[0]).quarantine_key is None


def test_retention_removes_what_a_killed_upload_left_but_keeps_what_a_waiting_item_needs(runtime, monkeypatch):
    now = dt.datetime.now(dt.UTC)
    two_days_ago = now - dt.timedelta(days=2)
    left = uploads.upload_prefix(two_days_ago) + "batch.zip"  # its API process was killed mid-upload
    runtime.store.put(left, io.BytesIO(b"PK"))
    recent = uploads.upload_prefix(now) + "batch.zip"  # an upload running now
    runtime.store.put(recent, io.BytesIO(b"PK"))
    original = uploads.upload_prefix
    monkeypatch.setattr(uploads, "upload_prefix", lambda: original(two_days_ago))
    body = _multipart(b"B", [("manifest", "manifest.csv", iter([HEADER + ROW])), ("file", "big.txt", iter([b"waiting"]))])
    result = receive_multipart_batch(runtime, _Stream(body), b"B", "lab:X", lambda _item: None)  # type: ignore[arg-type]
    with runtime.sessions() as session:
        (waiting,) = repo.batch_items(session, result.batch_id)
    assert purge_abandoned_uploads(runtime, now) == [left]
    assert set(runtime.store.list_keys("inbox/")) == {recent, waiting.inbox_key}


def test_retention_removes_the_temporary_file_a_killed_write_left_but_not_one_being_written(runtime):
    root = runtime.store.root / "inbox"
    root.mkdir(parents=True, exist_ok=True)
    killed, writing = root / ".part-killed", root / ".part-writing"
    for path in (killed, writing):
        path.write_bytes(b"%PDF-1.4 plaintext")
    two_days_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).timestamp()
    os.utime(killed, (two_days_ago, two_days_ago))
    assert retention.purge_interrupted_writes(runtime, dt.datetime.now(dt.UTC)) == 1
    assert not killed.exists() and writing.exists()


# ---------------------------------------------------------------------------------------------
# Idempotency keys and notifications
# ---------------------------------------------------------------------------------------------


def test_retention_forgets_keys_after_a_week(rt):
    for key in ("old", "recent"):
        assert _claim(rt, key=key) is None
        _finish(rt, key=key)
    with rt.sessions() as session:
        session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.key == "old").values(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
        session.commit()
    assert prune_idempotency_keys(rt, dt.datetime.now(dt.UTC)) == 1
    assert _claim(rt, key="old") is None and _claim(rt, key="recent") == Replay(202, ANSWER)


def test_retention_deletes_messages_sent_long_ago_and_keeps_recent_and_pending_ones(tmp_path):
    settings = _settings(tmp_path, notify_keep_days=90)
    rt = _runtime(settings)
    patient_id, _ = _one_patient_batch(rt, tmp_path, 2)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=120)
    with rt.sessions() as session:
        for status, created in (("sent", old), ("failed", old), ("pending", old), ("sent", dt.datetime.now(dt.UTC))):
            session.add(Notification(patient_id=patient_id, recipient_id=patient_id, kind="access", channel="log", subject="s",
                                     body="b", status=status, attempts=1, next_attempt_at=created, created_at=created))  # fmt: skip
        session.commit()
    assert prune_notifications(rt, dt.date.today()) == 2
    assert sorted(n.status for n in _notifications(rt)) == ["pending", "sent"]
    rt.close()


# ---------------------------------------------------------------------------------------------
# Care history lines and records closed for ten years
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("small_feed_chunks")
def test_an_old_line_is_never_shown_even_before_retention_runs_and_retention_deletes_it(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "f.csv", [_line("old", care="2023-01-01"), _line("new")]))
    assert _history(rt, ALICE) == ["new"]
    assert _count(rt, CareEvent) == 2
    assert prune_care_events(rt, TODAY, batch_size=1) == 1
    assert _count(rt, CareEvent) == 1


@pytest.mark.slow  # reads in a loop while pruning
@pytest.mark.usefixtures("small_feed_chunks")
def test_pruning_while_reads_run_deletes_in_batches_and_every_read_succeeds(rt, tmp_path):
    rows = [_line(f"old{i}", care="2023-06-01") for i in range(40)] + [_line(f"new{i}", care="2026-06-01") for i in range(5)]
    _feed(rt, _csv(tmp_path / "f.csv", rows))
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(len(_history(rt, ALICE)))
            except Exception as exc:  # noqa: BLE001 - any failed read fails the test
                errors.append(type(exc).__name__)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert prune_care_events(rt, TODAY, batch_size=4) == 40
    finally:
        stop.set()
        reader.join()
    assert errors == [] and seen and set(seen) == {5}


@pytest.mark.usefixtures("small_feed_chunks")
def test_a_record_closed_more_than_ten_years_ago_is_destroyed_with_all_its_rows(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "f.csv", [_line("a"), _line("b", ins=BOB)]))
    with rt.sessions() as session:
        alice_id = session.scalars(select(Patient.id).where(Patient.ins == ALICE)).one()
    set_contact(rt, alice_id, "alice@example.org", None)
    assert dispatch(rt, channels_from_settings(rt.settings), flush=True).sent == 2  # messages and a contact to destroy too
    with rt.sessions() as session:
        alice = session.scalars(select(Patient).where(Patient.ins == ALICE)).one()
        alice.status, alice.closed_at = "closed", dt.datetime(2016, 11, 22, tzinfo=dt.UTC)
        bob = session.scalars(select(Patient).where(Patient.ins == BOB)).one()
        bob.status, bob.closed_at = "closed", dt.datetime(2016, 11, 24, tzinfo=dt.UTC)  # not yet 10 years
        alice_id = alice.id
        session.commit()
    assert destroy_expired_records(rt, TODAY) == [alice_id]
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CareEvent).where(CareEvent.patient_id == alice_id)) == 0
        assert session.get(Patient, alice_id) is None
        assert session.get(Contact, alice_id) is None
        for table in (Notification, Outbox):
            assert session.scalar(select(func.count()).select_from(table).where(table.patient_id == alice_id)) == 0
    assert _count(rt, CareEvent) == 1
