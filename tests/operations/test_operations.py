"""The operator's tools (pipeline/operations): batches, stuck and rejected items, requeue, the
review queue, failed notifications. On SQLite and PostgreSQL (the `rt` fixture)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, update

from pipeline.access.audit import verify
from pipeline.documents.process import mark_retries_exhausted, process_item
from pipeline.index.base import new_id
from pipeline.index.models import AuditEntry, BatchItem, Document, Notification
from pipeline.index.repo import ensure_patient
from pipeline.ingest.intake import receive_batch
from pipeline.operations import backlog
from pipeline.operations.notifications import failed_notifications, retry_failed
from pipeline.operations.requeue import Skipped, candidates, requeue
from pipeline.operations.review import ReviewError, review_queue, set_classification
from pipeline.operations.work import WorkState, list_batches, rejected_items, stuck_items
from tests.conftest import read_expected


@pytest.fixture
def received(rt, sample_batch):
    """The sample batch taken in, nothing processed yet: (batch id, item ids in order)."""
    sent: list[str] = []
    result = receive_batch(rt, sample_batch, "hospital:CHU-OPS", sent.append)
    return result.batch_id, sent


def _good_item(rt, sample_batch, item_ids):  # type: ignore[no-untyped-def]
    good = {f for f, row in read_expected(sample_batch).items() if row["expected_state"] == "indexed"}
    with rt.sessions() as session:
        return next(i for i in item_ids if session.get(BatchItem, i).file in good)


def _state(rt, item_id):  # type: ignore[no-untyped-def]
    with rt.sessions() as session:
        item = session.get(BatchItem, item_id)
        return item.state, item.reason


def test_an_item_forced_to_retries_exhausted_ends_indexed_after_requeue(rt, sample_batch, received):
    _, item_ids = received
    item_id = _good_item(rt, sample_batch, item_ids)
    mark_retries_exhausted(rt, item_id)  # what the workers do once a failure outlived every retry
    assert _state(rt, item_id) == ("rejected", "retries_exhausted")
    assert item_id in candidates(rt)
    report = requeue(rt, [item_id], lambda i: process_item(rt, i))
    assert report.requeued == [item_id] and _state(rt, item_id) == ("indexed", None)


def test_requeue_leaves_a_rejection_that_is_a_verdict_on_the_document(rt, sample_batch, received):
    _, item_ids = received
    for item_id in item_ids:
        process_item(rt, item_id)
    verdicts = [i for i in item_ids if _state(rt, i)[0] == "rejected"]
    assert verdicts
    report = requeue(rt, verdicts[:1], lambda i: pytest.fail("nothing must be sent"))
    assert report.skipped == {verdicts[0]: Skipped.NOT_REQUEUEABLE}
    assert candidates(rt) == []


def test_a_stuck_item_is_listed_then_taken_back_by_requeue(rt, sample_batch, received):
    _, item_ids = received
    item_id = _good_item(rt, sample_batch, item_ids)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    in_a_while = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # a hung worker still renewing its lease
    with rt.sessions() as session:
        values = {"state": "processing", "attempts": 1, "started_at": long_ago, "lease_until": in_a_while}
        session.execute(update(BatchItem).where(BatchItem.id == item_id).values(**values))
        session.commit()
        assert [row["item"] for row in stuck_items(session, dt.timedelta(hours=1))] == [item_id]
        assert backlog.stuck_items_count(session, dt.timedelta(hours=1)) == 1
    assert item_id in candidates(rt, reasons=(), stuck_after=dt.timedelta(hours=1))
    requeue(rt, [item_id], lambda i: process_item(rt, i))
    assert _state(rt, item_id) == ("indexed", None)


def test_batches_are_listed_by_source_and_state_with_their_counts(rt, received):
    batch_id, item_ids = received
    with rt.sessions() as session:
        mine = list_batches(session, source="hospital:CHU-OPS")
        assert [row["id"] for row in mine] == [batch_id]
        assert mine[0]["state"] == WorkState.IN_PROGRESS and sum(mine[0]["counts"].values()) == mine[0]["total"]
        assert list_batches(session, state=WorkState.DONE) == []
        assert list_batches(session, source="lab:OTHER") == []
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert list_batches(session, since=tomorrow) == []


def test_rejected_items_are_listed_by_reason(rt, received):
    _, item_ids = received
    for item_id in item_ids:
        process_item(rt, item_id)
    with rt.sessions() as session:
        empty = rejected_items(session, reason="empty_file")
    assert empty and {row["reason"] for row in empty} == {"empty_file"}


def test_reclassifying_a_document_clears_its_review_flag_and_is_audited(rt, received):
    _, item_ids = received
    for item_id in item_ids:
        process_item(rt, item_id)
    with rt.sessions() as session:
        document = session.scalars(select(Document).limit(1)).one()
        session.execute(update(Document).where(Document.id == document.id).values(needs_review=True))
        session.commit()
    assert document.id in [row["document"] for row in review_queue(rt)]
    done = set_classification(rt, document.id, "11490-0", "ops-alice")
    assert done.class_code == "10" and document.id not in [row["document"] for row in review_queue(rt)]
    with rt.sessions() as session:
        entry = session.get(AuditEntry, done.audit_entry)
        assert (entry.actor_kind, entry.actor_id, entry.action, entry.document_id) == ("operator", "ops-alice", "reclassify", document.id)
        assert verify(session, rt.audit_key) == []


def test_reclassifying_with_a_class_that_is_not_the_types_is_refused(rt):
    with pytest.raises(ReviewError, match="belongs to class 10"):
        set_classification(rt, "any", "11490-0", "ops-alice", class_code="11")


def test_a_failed_notification_is_listed_and_put_back_in_line_by_retry(rt, received):
    with rt.sessions() as session:
        patient = ensure_patient(session, session.scalars(select(BatchItem.patient_ins).limit(1)).one())
        note = Notification(
            id=new_id(), patient_id=patient.id, recipient_id=patient.id, kind="documents_added", channel="email", subject="s",
            body="b", status="failed", attempts=5, next_attempt_at=dt.datetime.now(dt.UTC), last_error="smtp_refused",
        )  # fmt: skip
        session.add(note)
        session.commit()
    assert [row["notification"] for row in failed_notifications(rt)] == [note.id]
    assert json.dumps(failed_notifications(rt)).count("smtp_refused") == 1
    assert retry_failed(rt) == [note.id]
    with rt.sessions() as session:
        again = session.get(Notification, note.id)
        assert (again.status, again.attempts) == ("pending", 0)
    assert failed_notifications(rt) == []


def test_the_last_audit_verdict_of_the_day_is_the_one_kept(rt):
    today = dt.date.today()
    with rt.sessions() as session:
        backlog.record_audit_verdict(session, True, today)
        backlog.record_audit_verdict(session, False, today)
        assert backlog.last_job_run(session, backlog.AUDIT_VERIFY_BROKEN) is None
        assert backlog.last_job_run(session, backlog.AUDIT_VERIFY_OK) is not None
