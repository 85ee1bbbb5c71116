"""A document's versions at the stage level (pipeline/documents/versions.py), on SQLite and PostgreSQL:
a replacement through the worker's stage, and a withdrawal's crypto-shredding."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.core.identity import with_key
from pipeline.documents import versions
from pipeline.documents.process import process_item
from pipeline.documents.stored import DocumentGone, read_document
from pipeline.index.models import BatchItem, Document
from pipeline.index.states import AttemptOutcome, DocumentStatus
from pipeline.ingest.intake import receive_batch
from pipeline.ingest.manifest import MANIFEST_COLUMNS
from tests.conftest import raw_dump

SOURCE = "hospital:CHU-V"
INS = with_key("2850575123456")


def _batch(folder: Path, body: bytes, title: str, **extra: str) -> Path:
    """A batch of one text report, `extra` columns added to its manifest."""
    folder.mkdir()
    (folder / "report.txt").write_bytes(body)
    row = {"file": "report.txt", "patient_ins": INS, "source_document_id": "CR-7", "title": title, "document_type": "11488-4",
           "service_date": "2026-01-15", "author_id": "10001234567", "author_profession": "physician", **extra}  # fmt: skip
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*MANIFEST_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    (folder / "manifest.csv").write_text(out.getvalue(), encoding="utf-8")
    return folder


def _deposit(rt, folder: Path) -> list[str]:  # type: ignore[no-untyped-def]
    sent: list[str] = []
    receive_batch(rt, folder, SOURCE, sent.append)
    for item_id in sent:
        process_item(rt, item_id)
    return sent


def _documents(rt) -> list[Document]:  # type: ignore[no-untyped-def]
    with rt.sessions() as session:
        return list(session.scalars(select(Document).order_by(Document.version)))


def test_a_replacement_is_a_new_version_and_running_its_item_again_changes_nothing(rt, tmp_path: Path) -> None:
    _deposit(rt, _batch(tmp_path / "v1", b"premiere version\n", "CR"))
    (item_id,) = _deposit(rt, _batch(tmp_path / "v2", b"version corrigee\n", "CR corrige", version_action="replace"))
    assert process_item(rt, item_id) == AttemptOutcome.FINAL
    first, second = _documents(rt)
    assert (first.status, first.superseded_by_id, second.status, second.version, second.supersedes_id) == (
        DocumentStatus.SUPERSEDED, second.id, DocumentStatus.CURRENT, 2, first.id,
    )  # fmt: skip
    assert b"".join(read_document(rt, first)) == b"premiere version\n"


def test_a_withdrawn_document_cannot_be_decrypted_from_a_saved_copy_of_its_object(rt, tmp_path: Path) -> None:
    _deposit(rt, _batch(tmp_path / "v1", b"document envoye au mauvais patient\n", "CR"))
    (document,) = _documents(rt)
    with rt.store.open(document.object_key) as stored:
        saved = stored.read()  # what a backup of the object store kept
    wrapped_before = document.wrapped_key
    assert versions.withdraw(rt, SOURCE, "CR-7") == [document.id]
    assert not rt.store.exists(document.object_key)
    rt.store.put(document.object_key, io.BytesIO(saved))  # the backup restored
    (after,) = _documents(rt)
    assert (after.status, after.wrapped_key) == (DocumentStatus.ENTERED_IN_ERROR, None)
    with pytest.raises(DocumentGone):
        b"".join(read_document(rt, after))
    assert wrapped_before is not None and wrapped_before not in raw_dump(rt.engine)  # no copy of its key left in the index


def test_withdrawing_again_audits_and_tells_nothing_more_and_deletes_a_left_over_object(rt, tmp_path: Path) -> None:
    from pipeline.index.models import AuditEntry, Outbox

    _deposit(rt, _batch(tmp_path / "v1", b"x\n", "CR"))
    (document,) = _documents(rt)
    withdrawn = versions.withdraw(rt, SOURCE, "CR-7")
    rt.store.put(document.object_key, io.BytesIO(b"ciphertext a crash left behind"))
    assert versions.withdraw(rt, SOURCE, "CR-7") == withdrawn == [document.id]
    assert not rt.store.exists(document.object_key)
    with rt.sessions() as session:
        assert len(session.scalars(select(AuditEntry).where(AuditEntry.action == "withdraw")).all()) == 1
        assert len(session.scalars(select(Outbox).where(Outbox.kind == "document_withdrawn")).all()) == 1


def test_a_source_withdraws_nothing_of_a_document_it_does_not_have(rt, tmp_path: Path) -> None:
    _deposit(rt, _batch(tmp_path / "v1", b"x\n", "CR"))
    assert versions.withdraw(rt, "hospital:OTHER", "CR-7") == []
    assert _documents(rt)[0].live


def test_a_bad_version_action_is_rejected_as_invalid_metadata(rt, tmp_path: Path) -> None:
    (item_id,) = _deposit(rt, _batch(tmp_path / "v1", b"x\n", "CR", version_action="append"))
    with rt.sessions() as session:
        item = session.get(BatchItem, item_id)
        assert item is not None and (item.state, item.reason) == ("rejected", "invalid_metadata")


def test_a_document_still_held_from_the_patient_is_withdrawn_without_telling_them(rt, tmp_path: Path) -> None:
    from pipeline.index.models import Outbox

    _deposit(rt, _batch(tmp_path / "v1", b"resultat a annoncer\n", "CR", announcement_date="2099-01-01"))
    assert len(versions.withdraw(rt, SOURCE, "CR-7")) == 1
    with rt.sessions() as session:
        assert session.scalars(select(Outbox).where(Outbox.kind == "document_withdrawn")).all() == []
