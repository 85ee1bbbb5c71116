"""Processing one item without a broker: idempotence, crash recovery, orphan cleanup."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from pipeline.core.reasons import Transient
from pipeline.documents.process import mark_retries_exhausted, process_item
from pipeline.index import repo
from pipeline.index.models import BatchItem, Document, Outbox
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime

pytestmark = pytest.mark.slow  # each test receives and processes a sample batch

DEAD = dt.timedelta(0)  # the lease of a claim whose worker died: lapsed


@pytest.fixture
def small_batch(tmp_path):
    from pipeline.samples import generate_samples

    out = tmp_path / "batch"
    generate_samples(out, patients=2, documents=4, seed=3, bad=False)
    return out


@pytest.fixture
def received(embedded_settings, small_batch):
    rt = Runtime.from_settings(embedded_settings, prepare=True)
    sent: list[str] = []
    result = receive_batch(rt, small_batch, "hospital:T", sent.append)
    yield rt, result.batch_id, sent
    rt.close()


def _item(rt: Runtime, item_id: str) -> BatchItem:
    with rt.sessions() as session:
        return session.get(BatchItem, item_id)


def _count(rt: Runtime, model) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_intake_records_queued_items_and_puts_their_bytes_in_the_inbox(received):
    rt, _, sent = received
    assert len(sent) == 4
    for item_id in sent:
        item = _item(rt, item_id)
        assert item.state == "queued"
        assert rt.store.exists(item.inbox_key)


def test_processing_indexes_the_item_and_removes_its_inbox_copy(received):
    rt, _, sent = received
    assert process_item(rt, sent[0]) == "indexed"
    item = _item(rt, sent[0])
    assert item.state == "indexed" and item.attempts == 1
    assert not rt.store.exists(item.inbox_key)


def test_running_a_message_twice_changes_nothing(received):
    rt, _, sent = received
    process_item(rt, sent[0])
    before = (_count(rt, Document), _count(rt, Outbox), sorted(rt.store.list_keys()))
    assert process_item(rt, sent[0]) == "final"
    assert (_count(rt, Document), _count(rt, Outbox), sorted(rt.store.list_keys())) == before


def test_an_attempt_that_died_after_uploading_leaves_no_orphan(received):
    rt, _, sent = received
    with rt.sessions() as session:
        dead = repo.claim_item(session, sent[0], lease=DEAD)  # a worker claims, uploads, and is killed
    rt.store.put(dead.item.pending_object_key, io.BytesIO(b"partial ciphertext"))
    assert process_item(rt, sent[0]) == "indexed"
    with rt.sessions() as session:
        document = session.scalars(select(Document)).one()
        item = session.get(BatchItem, sent[0])
    assert not rt.store.exists(dead.item.pending_object_key)
    assert [k for k in rt.store.list_keys() if k.startswith("docs/")] == [document.object_key]
    assert (item.attempts, item.crashes) == (2, 1)


def test_an_item_that_keeps_crashing_its_worker_is_set_aside(received, embedded_settings):
    rt, _, sent = received
    for _ in range(embedded_settings.max_attempts):
        with rt.sessions() as session:
            repo.claim_item(session, sent[1], lease=DEAD)  # each attempt dies without finishing
    assert process_item(rt, sent[1]) == "rejected"
    item = _item(rt, sent[1])
    assert (item.state, item.reason) == ("rejected", "processing_crashed")
    assert not rt.store.exists(item.inbox_key)
    assert rt.store.exists(item.quarantine_key)
    assert _count(rt, Document) == 0


def test_transient_failures_that_outlive_every_retry_end_the_item(received):
    rt, _, sent = received
    mark_retries_exhausted(rt, sent[2])
    item = _item(rt, sent[2])
    assert (item.state, item.reason) == ("rejected", "retries_exhausted")
    assert not rt.store.exists(item.inbox_key)


def test_a_closed_record_accepts_no_document(received):
    rt, _, sent = received
    item = _item(rt, sent[3])
    with rt.sessions() as session:
        patient = repo.ensure_patient(session, item.patient_ins)
        patient.status = "closed"
        session.commit()
    assert process_item(rt, sent[3]) == "rejected"
    assert _item(rt, sent[3]).reason == "record_closed"


def test_one_notification_for_many_documents_of_one_patient(received):
    rt, batch_id, sent = received
    for item_id in sent:
        process_item(rt, item_id)
    with rt.sessions() as session:
        patients = session.scalar(select(func.count(func.distinct(Document.patient_id))))
        rows = session.scalars(select(Outbox).where(Outbox.ref_id == batch_id)).all()
    assert len(sent) > patients  # some patient got several documents
    assert len(rows) == patients


def test_a_deposit_is_written_to_the_patient_s_access_log_by_its_source(received):
    from pipeline.access.audit import entries_for, verify

    rt, _, sent = received
    assert process_item(rt, sent[0]) == "indexed"
    process_item(rt, sent[0])  # the same message again: still one deposit
    with rt.sessions() as session:
        document = session.scalars(select(Document).where(Document.batch_item_id == sent[0])).one()
        entries = [e for e in entries_for(session, document.patient_id) if e.action == "deposit"]
        assert verify(session, rt.audit_key, document.patient_id) == []
    assert [(e.actor_id, e.actor_kind, e.profession, e.document_id, e.outcome) for e in entries] == [
        ("hospital:T", "source", document.author_profession, document.id, "allowed")
    ]


def test_an_announcement_date_holds_the_document_from_the_patient_and_from_the_deposit_notice(embedded_settings, tmp_path):
    import datetime as dt

    from pipeline.core.clock import paris_date
    from pipeline.core.identity import with_key
    from pipeline.index.models import Notification
    from pipeline.notify.dispatch import DispatchReport, compose_due

    ins, later = with_key("1850575123456"), paris_date() + dt.timedelta(days=10)
    header = "file,patient_ins,source_document_id,title,service_date,author_id,author_profession,announcement_date\n"
    rows = [f"{name}.txt,{ins},{name.upper()},Compte rendu,2025-01-02,10001234567,physician,{hold}\n" for name, hold in
            (("open", ""), ("held", later.isoformat()), ("bad", "le 3 mars"))]  # fmt: skip
    batch = tmp_path / "held"
    batch.mkdir()
    (batch / "manifest.csv").write_text(header + "".join(rows))
    for name in ("open", "held", "bad"):
        (batch / f"{name}.txt").write_text(f"Compte rendu {name}: resultat normal.\n")
    rt = Runtime.from_settings(embedded_settings, prepare=True)
    sent: list[str] = []
    receive_batch(rt, batch, "hospital:T", sent.append)
    states = {_item(rt, item_id).file: process_item(rt, item_id) for item_id in sent}
    assert states == {"open.txt": "indexed", "held.txt": "indexed", "bad.txt": "rejected"}
    with rt.sessions() as session:
        holds = dict(session.execute(select(Document.source_document_id, Document.hidden_from_patient_until)).all())
        bad = session.scalars(select(BatchItem).where(BatchItem.file == "bad.txt")).one()
    assert holds == {"OPEN": None, "HELD": later} and (bad.reason, "announcement_date" in bad.message) == ("invalid_metadata", True)
    compose_due(rt, dt.datetime.now(dt.UTC), DispatchReport(), flush=True)
    with rt.sessions() as session:
        (body,) = session.scalars(select(Notification.body)).all()
    assert "1 nouveau document a été ajouté" in body
    rt.close()


def test_the_spooled_document_lives_in_memory_only_and_cannot_be_changed(received, tmp_path, monkeypatch):
    import os
    import tempfile

    from pipeline.documents.process import spool

    rt, _, sent = received
    item = _item(rt, sent[0])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "worker-tmp"))
    (tmp_path / "worker-tmp").mkdir()
    with rt.inbox.open(item.inbox_key, item.inbox_member) as source:
        original = source.read()
    with spool(rt, item) as spooled:
        assert os.readlink(f"/proc/self/fd/{spooled.file.fileno()}").startswith("/memfd:")
        assert not list((tmp_path / "worker-tmp").iterdir())
        with pytest.raises(PermissionError):
            os.pwrite(spooled.file.fileno(), b"X", 0)
        assert spooled.file.read() == original and spooled.size == len(original)


def test_a_message_for_an_item_that_a_live_attempt_holds_changes_nothing(received):
    rt, _, sent = received
    with rt.sessions() as session:
        live = repo.claim_item(session, sent[0])  # another worker is on it and renews its lease
    assert process_item(rt, sent[0]) == "busy"
    item = _item(rt, sent[0])
    assert (item.state, item.attempts, item.crashes) == ("processing", live.attempt, 0)
    assert rt.store.exists(item.inbox_key)


def test_an_attempt_an_outage_interrupted_is_taken_back_by_its_message_without_counting_a_crash(received):
    rt, _, sent = received
    with rt.sessions() as session:
        interrupted = repo.claim_item(session, sent[0])  # the index went away before the claim was released
    assert process_item(rt, sent[0], resuming=interrupted.attempt) == "indexed"
    assert (_item(rt, sent[0]).crashes, _count(rt, Document)) == (0, 1)


def test_an_outage_during_processing_leaves_the_item_queued_with_its_bytes(received, monkeypatch):
    from pipeline.core.outage import Interrupted, Service

    rt, _, sent = received

    def unavailable(key, source):  # noqa: ANN001, ARG001
        raise Transient("storage_put_failed")

    monkeypatch.setattr(rt.store, "put", unavailable)
    with pytest.raises(Interrupted) as stopped:
        process_item(rt, sent[0])
    assert stopped.value.service == Service.STORAGE
    item = _item(rt, sent[0])
    assert (item.state, item.reason, item.crashes) == ("queued", None, 0)
    assert rt.store.exists(item.inbox_key)


def test_running_the_same_intake_again_reopens_items_whose_retries_ran_out_and_indexes_them(received, small_batch):
    rt, batch_id, sent = received
    mark_retries_exhausted(rt, sent[2])
    assert _item(rt, sent[2]).reason == "retries_exhausted"
    again: list[str] = []
    assert receive_batch(rt, small_batch, "hospital:T", again.append).resumed
    assert sent[2] in again
    assert process_item(rt, sent[2]) == "indexed"
    item = _item(rt, sent[2])
    assert (item.state, item.reason, item.message) == ("indexed", None, None)
    assert not rt.store.exists(item.inbox_key)
