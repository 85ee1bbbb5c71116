"""Record keys: one per patient, rotation under load, crypto-shredding, integrity on read."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.envelope import IntegrityError, decrypt
from pipeline.core.keys import KeyProviderError, add_master_key
from pipeline.core.sealing import seal_context
from pipeline.documents.stored import DocumentGone, destroy_record, read_document, shred_document
from pipeline.index.models import Document, RecordKey
from pipeline.runtime import Runtime
from tests.conftest import index_batch

pytestmark = pytest.mark.slow  # indexes documents, rotates and shreds keys


@pytest.fixture
def stored(embedded_settings, tmp_path):
    """A runtime with a small batch indexed: several documents over two patients."""
    from pipeline.samples import generate_samples

    generate_samples(tmp_path / "batch", patients=2, documents=6, seed=9, bad=False)
    rt = Runtime.from_settings(embedded_settings, prepare=True)
    yield rt, index_batch(rt, tmp_path / "batch", "hospital:K"), tmp_path / "batch"
    rt.close()


def _plain(rt: Runtime, document: Document) -> bytes:
    return b"".join(read_document(rt, document))


def _fresh(rt: Runtime, document_id: str) -> Document:
    with rt.sessions() as session:
        return session.get(Document, document_id)


def test_documents_of_one_patient_share_one_record_key_and_patients_do_not(stored):
    rt, documents, _ = stored
    by_patient: dict[str, set[str]] = {}
    for document in documents:
        by_patient.setdefault(document.patient_id, set()).add(document.record_key_id)
    assert len(by_patient) == 2
    assert all(len(keys) == 1 for keys in by_patient.values())
    assert len({key for keys in by_patient.values() for key in keys}) == 2


def test_rotation_rewraps_every_record_key_and_documents_stay_readable(stored, embedded_settings):
    rt, documents, _ = stored
    before = {d.id: _plain(rt, d) for d in documents}
    result = CliRunner().invoke(app, ["keys", "rotate"], env={"DMP_HOME": str(embedded_settings.home)})
    assert result.exit_code == 0, result.output
    fresh = Runtime.from_settings(embedded_settings)
    with fresh.sessions() as session:
        assert {row.master_key_id for row in session.scalars(select(RecordKey))} == {"k2"}
    assert {d.id: _plain(fresh, d) for d in documents} == before


def test_an_interrupted_rotation_resumes_where_it_stopped(stored, embedded_settings):
    rt, documents, _ = stored
    add_master_key(embedded_settings.resolved_key_file())
    rotating = Runtime.from_settings(embedded_settings)

    def stop_after_first_batch(_count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotating.record_keys.rewrap(batch_size=1, on_progress=stop_after_first_batch)
    assert rotating.record_keys.pending_rewrap() == 1
    assert rotating.record_keys.rewrap() == 1
    assert rotating.record_keys.pending_rewrap() == 0
    assert all(_plain(rotating, d) for d in documents)


def test_rotation_while_another_thread_reads_every_document_loses_no_read(stored, embedded_settings):
    rt, documents, _ = stored
    reader = Runtime.from_settings(embedded_settings)
    reader.record_keys.cache_seconds = 0  # every read unwraps its record key again
    expected = {d.id: _plain(reader, d) for d in documents}
    failures: list[str] = []
    reads = 0
    stop = threading.Event()

    def read_all_the_time() -> None:
        nonlocal reads
        while not stop.is_set():
            for document in documents:
                try:
                    if _plain(reader, _fresh(reader, document.id)) != expected[document.id]:
                        failures.append(f"{document.id}: wrong bytes")
                except Exception as exc:  # noqa: BLE001 - any failure is a lost read
                    failures.append(f"{document.id}: {type(exc).__name__}")
                reads += 1

    thread = threading.Thread(target=read_all_the_time)
    thread.start()
    try:
        for _ in range(5):
            add_master_key(embedded_settings.resolved_key_file())
            rotating = Runtime.from_settings(embedded_settings)
            rotating.record_keys.rewrap(batch_size=1)
    finally:
        stop.set()
        thread.join()
    assert reads > len(documents)
    assert failures == []


def test_a_shredded_document_cannot_be_decrypted_from_a_saved_copy_of_its_object(stored):
    rt, documents, _ = stored
    victim, neighbour = documents[0], next(d for d in documents[1:] if d.patient_id == documents[0].patient_id)
    with rt.store.open(victim.object_key) as handle:
        saved = handle.read()  # e.g. a backup taken before the deletion
    assert shred_document(rt, victim.id)
    shredded = _fresh(rt, victim.id)
    assert shredded.wrapped_key is None and shredded.shredded_at is not None
    assert not rt.store.exists(victim.object_key)
    with pytest.raises(DocumentGone):
        read_document(rt, shredded)
    # Everything still kept (the record key, the key file, the index) does not open the copy:
    record = rt.record_keys.get(victim.record_key_id)
    with pytest.raises(IntegrityError):
        b"".join(decrypt(io.BytesIO(saved), record.key, seal_context(victim.id, victim.patient_id)))
    assert _plain(rt, neighbour)  # the rest of the record is untouched


def test_destroying_a_record_key_erases_the_whole_record_at_once(stored):
    rt, documents, _ = stored
    patient = documents[0].patient_id
    theirs = [d for d in documents if d.patient_id == patient]
    others = [d for d in documents if d.patient_id != patient]
    saved = {}
    for document in theirs:
        with rt.store.open(document.object_key) as handle:
            saved[document.id] = handle.read()
    assert destroy_record(rt, patient) == len(theirs)
    with pytest.raises(KeyProviderError):
        rt.record_keys.for_patient(patient)
    for document in theirs:
        with pytest.raises(DocumentGone):
            read_document(rt, _fresh(rt, document.id))
    assert all(_plain(rt, d) for d in others)


def test_a_record_key_destroyed_by_another_process_is_refused_though_this_one_still_holds_it(stored):
    rt, documents, _ = stored
    patient = documents[0].patient_id
    opened = rt.record_keys.for_patient(patient)  # now held in this process's cache
    elsewhere = Runtime.from_settings(rt.settings)
    try:
        elsewhere.record_keys.destroy(patient)
    finally:
        elsewhere.close()
    with rt.sessions() as session:
        row = session.get(RecordKey, opened.id)
        assert row is not None
        with pytest.raises(KeyProviderError):
            rt.record_keys.opened(row.id, row.patient_id, row.master_key_id, row.wrapped)


def test_a_tampered_object_stops_the_read_with_an_integrity_error_that_is_logged(stored, caplog):
    rt, documents, _ = stored
    document = documents[0]
    with rt.store.open(document.object_key) as handle:
        data = bytearray(handle.read())
    data[-20] ^= 0x01
    rt.store.put(document.object_key, io.BytesIO(bytes(data)))
    with caplog.at_level(logging.ERROR, logger="pipeline.core.sealing"), pytest.raises(IntegrityError):
        _plain(rt, document)
    assert document.object_key in caplog.text
