"""Embedded mode end to end: a sample batch through the CLI, then what the store and index hold."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.settings import Settings
from pipeline.documents.stored import read_document
from pipeline.index.models import BatchItem, Document, Outbox
from pipeline.runtime import Runtime
from tests.conftest import read_expected

pytestmark = pytest.mark.slow  # whole batches through dmp ingest

runner = CliRunner()


def _dmp(settings, *args: str) -> str:
    result = runner.invoke(app, list(args), env={"DMP_HOME": str(settings.home)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _ingest(settings, batch: Path) -> dict:
    return json.loads(_dmp(settings, "ingest", str(batch), "--source", "hospital:CHU-TEST", "--json").strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, sample_batch):
    """One ingested sample batch shared by the tests that only read its outcome."""
    settings = Settings(home=tmp_path_factory.mktemp("embedded") / "dmp-home")
    return settings, _ingest(settings, sample_batch)


@pytest.fixture
def ingested_fresh(embedded_settings, sample_batch):
    """A batch ingested for a test that adds to the index."""
    return embedded_settings, _ingest(embedded_settings, sample_batch)


def _status(settings, batch_id: str) -> dict:
    return json.loads(_dmp(settings, "status", batch_id, "--json"))


def _counts(rt: Runtime) -> tuple[int, int, int, int]:
    with rt.sessions() as session:
        docs = session.scalar(select(func.count()).select_from(Document))
        items = session.scalar(select(func.count()).select_from(BatchItem))
        outbox = session.scalar(select(func.count()).select_from(Outbox))
    return docs, items, outbox, len(list(rt.store.list_keys()))


def test_every_document_ends_as_expected_csv_says(ingested, sample_batch):
    settings, summary = ingested
    expected = read_expected(sample_batch)
    status = _status(settings, summary["batch"])
    assert summary["total"] == len(expected) == len(status["items"])
    for item in status["items"]:
        want = expected[item["file"]]
        assert item["state"] == want["expected_state"], item
        assert (item["reason"] or "") == want["expected_reason"], item
        if item["state"] == "indexed":
            assert (item["class_code"], item["type_code"]) == (want["class_code"], want["type_code"]), item


def test_status_json_has_the_documented_shape(ingested):
    settings, summary = ingested
    item = _status(settings, summary["batch"])["items"][0]
    assert {"file", "source_document_id", "state", "reason", "message", "document_id", "class_code", "type_code"} <= set(item)


def test_stored_objects_are_ciphertext_that_decrypts_back_to_the_document(ingested, sample_batch):
    settings, _ = ingested
    rt = Runtime.from_settings(settings)
    with rt.sessions() as session:
        documents = session.scalars(select(Document)).all()
        files = {d.id: session.get(BatchItem, d.batch_item_id).file for d in documents}
    assert documents
    for doc in documents:
        plaintext = (sample_batch / files[doc.id]).read_bytes()
        with rt.store.open(doc.object_key) as handle:
            stored = handle.read()
        assert plaintext[:64] not in stored
        restored = b"".join(read_document(rt, doc))
        assert hashlib.sha256(restored).digest() == hashlib.sha256(plaintext).digest()
        assert doc.size == len(plaintext)


def test_no_plaintext_remains_in_the_store_once_the_batch_is_done(ingested):
    settings, _ = ingested
    rt = Runtime.from_settings(settings)
    keys = list(rt.store.list_keys())
    assert not [k for k in keys if k.startswith("inbox/")]
    for key in keys:
        with rt.store.open(key) as handle:
            assert handle.read(4) == b"DMPE", key


def test_rejected_documents_are_kept_encrypted_in_quarantine(ingested):
    settings, summary = ingested
    rt = Runtime.from_settings(settings)
    with rt.sessions() as session:
        kept = session.scalars(select(BatchItem).where(BatchItem.state == "rejected", BatchItem.quarantine_key.is_not(None))).all()
    assert kept
    for item in kept:
        assert rt.store.exists(item.quarantine_key)


def test_reingesting_the_same_batch_adds_nothing(ingested_fresh, sample_batch):
    settings, summary = ingested_fresh
    rt = Runtime.from_settings(settings)
    before = _counts(rt)
    again = _ingest(settings, sample_batch)
    assert again["batch"] == summary["batch"] and again["resumed"] is True
    assert _counts(rt) == before


def test_the_same_documents_in_a_new_batch_are_not_indexed_twice(ingested_fresh, sample_batch, tmp_path):
    settings, _ = ingested_fresh
    rt = Runtime.from_settings(settings)
    docs_before = _counts(rt)[0]
    copy = tmp_path / "copy"
    shutil.copytree(sample_batch, copy)
    (copy / "manifest.csv").write_bytes((sample_batch / "manifest.csv").read_bytes() + b"\n")
    second = _ingest(settings, copy)
    assert second["resumed"] is False
    assert _counts(rt)[0] == docs_before


def test_one_notification_per_patient_per_batch(ingested):
    settings, summary = ingested
    rt = Runtime.from_settings(settings)
    with rt.sessions() as session:
        patients_with_docs = session.scalar(select(func.count(func.distinct(Document.patient_id))))
        outbox = session.scalars(select(Outbox).where(Outbox.ref_id == summary["batch"])).all()
    assert len(outbox) == patients_with_docs
    assert all(entry.kind == "documents_added" for entry in outbox)


def test_a_zip_batch_gives_the_same_result_as_the_folder(embedded_settings, sample_batch, tmp_path):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(sample_batch.iterdir()):
            zf.write(path, f"batch/{path.name}")
    summary = _ingest(embedded_settings, archive)
    expected = read_expected(sample_batch)
    states = {i["file"]: (i["state"], i["reason"] or "") for i in _status(embedded_settings, summary["batch"])["items"]}
    assert states == {f: (row["expected_state"], row["expected_reason"]) for f, row in expected.items()}


def test_a_batch_without_manifest_is_refused_with_a_clear_error(embedded_settings, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "empty"), "--source", "hospital:X"], env={"DMP_HOME": str(embedded_settings.home)}
    )
    assert result.exit_code == 2
    assert "manifest.csv" in result.output


def test_an_unknown_source_kind_is_refused(embedded_settings, sample_batch):
    result = runner.invoke(app, ["ingest", str(sample_batch), "--source", "bank:X"], env={"DMP_HOME": str(embedded_settings.home)})
    assert result.exit_code == 2


def _accented_batch(folder: Path) -> Path:
    """A batch whose file names carry accents, as French hospitals name them."""
    from pipeline.core.identity import with_key

    names = ["résultat.txt", "comptes-rendus/lettre de sortie élève.txt"]
    (folder / "comptes-rendus").mkdir(parents=True)
    rows = ["file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession"]
    for n, name in enumerate(names):
        (folder / name).write_text(f"Compte rendu de consultation {n}: examen clinique sans particularité.\n", encoding="utf-8")
        rows.append(f"{name},{with_key('1850575123456')},ACC-{n},Compte rendu,11490-0,2025-01-02,10001234567,physician")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_a_zip_made_by_zip_r_with_accented_names_is_ingested_whole(embedded_settings, tmp_path):
    from tests.core.test_zipnames import info_zip_zip, unmarked_utf8_zip

    folder = _accented_batch(tmp_path / "lot")
    archive = tmp_path / "lot.zip"
    if shutil.which("zip"):
        info_zip_zip(folder, archive)
    else:  # the same bytes as Info-ZIP writes them: UTF-8 names, unmarked
        archive.write_bytes(unmarked_utf8_zip({p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}))
    items = _status(embedded_settings, _ingest(embedded_settings, archive)["batch"])["items"]
    assert sorted((i["file"], i["state"]) for i in items) == [
        ("comptes-rendus/lettre de sortie élève.txt", "indexed"),
        ("résultat.txt", "indexed"),
    ]


def _modes(home: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in (home, *home.iterdir())}


def test_the_embedded_home_and_everything_in_it_are_owner_only(ingested):
    settings, _ = ingested
    modes = _modes(settings.home)
    assert {"index.sqlite3", "keys.json", "objects"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}


def test_a_home_open_to_others_is_made_owner_only_with_a_warning(embedded_settings, sample_batch, caplog):
    _ingest(embedded_settings, sample_batch)
    home = embedded_settings.home
    for path in (home, home / "objects"):
        path.chmod(0o755)
    (home / "index.sqlite3").chmod(0o644)
    result = runner.invoke(app, ["ingest", str(sample_batch), "--source", "hospital:CHU-TEST"], env={"DMP_HOME": str(home)})
    assert result.exit_code == 0, result.output
    (warning,) = [r for r in caplog.records if r.name == "pipeline.core.home"]
    assert warning.levelname == "WARNING" and "readable by group or others" in warning.getMessage()
    assert {name: mode for name, mode in _modes(home).items() if mode & 0o077} == {}


def test_the_intake_shows_the_files_taken_in(embedded_settings, sample_batch):
    result = runner.invoke(
        app, ["ingest", str(sample_batch), "--source", "hospital:CHU-TEST"], env={"DMP_HOME": str(embedded_settings.home)}
    )
    assert result.exit_code == 0, result.output
    total = len(read_expected(sample_batch))
    assert f"{sample_batch.name}: {total}/{total} files taken in" in result.stderr


def test_rows_and_names_the_index_cannot_hold_are_rejected_alone_on_both_databases(rt, tmp_path):
    """An over-long or NUL-holding field, a file name that is not UTF-8, a path longer than the item's
    column: each is one rejected item; the batch is recorded and its good document indexed (PostgreSQL
    failed the whole batch's insert, SQLite could not encode the name)."""
    import csv
    import os

    from pipeline.samples import generate_samples
    from pipeline.status import batch_status
    from tests.conftest import index_batch

    batch = tmp_path / "batch"
    generate_samples(batch, patients=1, documents=3, seed=11, bad=False)
    with (batch / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[1]["author_id"] = "9" * 5000
    rows[2]["title"] = "Synth\x00se"
    with (batch / "manifest.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.fsencode(batch) + b"/r\xe9sultat.pdf", "wb") as handle:  # a Latin-1 name, as old tools write them
        handle.write(b"%PDF-1.4\n")
    deep = batch / ("d" * 250) / ("e" * 250) / ("f" * 50)
    deep.mkdir(parents=True)
    (deep / "scan.pdf").write_bytes(b"%PDF-1.4\n")

    documents = index_batch(rt, batch, "hospital:CHU-WIDTHS")
    with rt.sessions() as session:
        batch_id = session.scalar(select(BatchItem.batch_id))
        status = batch_status(session, batch_id)
    by_file = {item["file"]: (item["state"], item["reason"]) for item in status["items"] if item["reason"] != "unlisted_file"}
    assert by_file == {
        rows[0]["file"]: ("indexed", None),
        rows[1]["file"]: ("rejected", "invalid_metadata"),
        rows[2]["file"]: ("rejected", "invalid_metadata"),
    }
    unlisted = sorted(item["file"] for item in status["items"] if item["reason"] == "unlisted_file")
    assert len(unlisted) == 4  # the two invalid rows' files, the Latin-1 name, the deep path
    assert "r\ufffdsultat.pdf" in unlisted or "r?sultat.pdf" in unlisted
    assert all(len(name) <= 512 for name in unlisted) and any("…#" in name for name in unlisted)
    assert [d.source_document_id for d in documents] == [rows[0]["source_document_id"]]


def test_an_intake_stopped_by_an_outage_says_how_far_it_got_and_running_it_again_resumes(embedded_settings, sample_batch):
    from pipeline.core.reasons import Transient
    from pipeline.ingest.intake import IntakeInterrupted, receive_batch

    rt = Runtime.from_settings(embedded_settings.model_copy(update={"intake_retries": 2}), prepare=True)
    sent: list[str] = []

    def broker_goes_away(item_id: str) -> None:
        if len(sent) == 3:
            raise Transient("broker_unavailable")
        sent.append(item_id)

    with pytest.raises(IntakeInterrupted) as stopped:
        receive_batch(rt, sample_batch, "hospital:CHU-TEST", broker_goes_away)
    assert (stopped.value.taken, stopped.value.code) == (3, "broker_unavailable")
    assert f"{stopped.value.batch_id}: 3 of its {stopped.value.total} items handed to the workers" in str(stopped.value)

    again = receive_batch(rt, sample_batch, "hospital:CHU-TEST", sent.append)
    assert again.resumed and again.batch_id == stopped.value.batch_id
    with rt.sessions() as session:
        waiting = session.scalars(select(BatchItem.id).where(BatchItem.state == "queued")).all()
    assert set(waiting) <= set(sent)
    rt.close()


def test_an_intake_that_took_the_whole_batch_in_succeeds_even_if_the_index_cannot_be_read_after(
    embedded_settings, sample_batch, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    import pipeline.status

    def index_gone(session, ref):  # noqa: ANN001, ARG001
        raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(pipeline.status, "any_status", index_gone)
    result = runner.invoke(app, ["ingest", str(sample_batch), "--source", "hospital:CHU-TEST", "--json"],
                           env={"DMP_HOME": str(embedded_settings.home)})  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["total"] >= 40 and summary["batch"]
    assert "the batch was taken in" in result.stderr
