"""The same Alembic migrations build the models' schema on SQLite and PostgreSQL, and convert existing rows."""

import csv
import datetime as dt
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from pipeline.index.db import MIGRATIONS, SchemaNotReady, check_schema, downgrade, file_heads, make_engine, upgrade
from pipeline.index.models import Base
from tests.conftest import raw_dump

pytestmark = pytest.mark.slow  # runs the migrations up and down, many times

DOCTOR = "10001234567"


def test_migrations_create_exactly_the_models_schema(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_upgrading_twice_is_harmless(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)
    engine.dispose()


def test_the_heads_read_from_the_migration_files_are_alembics():
    assert file_heads() == set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def test_the_schema_check_passes_at_the_head_and_names_an_older_schema(database_url):
    engine = make_engine(database_url)
    upgrade(engine, "0017")
    with pytest.raises(SchemaNotReady, match="older than this version"):
        check_schema(engine)
    upgrade(engine)
    check_schema(engine)
    engine.dispose()


SEALED_BY_0007 = {
    "document": "Synthèse psychiatrique",
    "waiting": "Compte rendu opératoire",
    "final": "Compte rendu d'IVG",
    "destroyed": "Compte rendu de sevrage",
    "patient_email": "jeanne@example.org",
    "patient_phone": "+33611111111",
    "doctor_email": "dr.durand@example.org",
    "lone_email": "pierre@example.org",
    "act_label": "Consultation psychiatrique",
    "professional_name": "Dr Sigmund Freud",
}
CARE_DATE = dt.date.today() - dt.timedelta(days=30)


def _care_line(ins: str, **changes: str) -> dict[str, str]:
    """A feed line as the insurer sends it."""
    day = CARE_DATE.isoformat()
    return {"line_id": "L1", "patient_ins": ins, "care_date": day, "act_code": "CNPSY", "act_label": SEALED_BY_0007["act_label"],
            "professional_id": "10009999999", "professional_name": SEALED_BY_0007["professional_name"], "profession": "psychiatrist",
            "amount_billed": "51.70", "amount_reimbursed": "36.19", "reimbursement_date": day, "supersedes": ""} | changes  # fmt: skip


def _index_at_0004(database_url: str, home: Path):  # type: ignore[no-untyped-def]
    """An index at revision 0004 holding titles and addresses in clear, as main wrote them; returns (engine, keys, ids)."""
    from sqlalchemy import text

    from pipeline.carehistory.feedformat import check_line
    from pipeline.core.identity import with_key
    from pipeline.core.keys import FileKeyProvider, load_key_file
    from pipeline.index.db import session_factory
    from pipeline.index.recordkeys import RecordKeys

    engine = make_engine(database_url)
    upgrade(engine, "0004")
    load_key_file(home / "keys.json", create=True)
    keys = FileKeyProvider(home / "keys.json")
    v = SEALED_BY_0007
    ids = {name: str(uuid.uuid4()) for name in ("p1", "p2", "p3", "batch", "i1", "i2", "i3", "d1", "d2", "n1", "n2")}
    with engine.begin() as db:
        for n, pid in enumerate((ids["p1"], ids["p2"], ids["p3"])):
            db.execute(
                text("INSERT INTO patients (id, ins, status) VALUES (:id, :ins, 'open')"), {"id": pid, "ins": with_key(f"185057512345{n}")}
            )
    record_keys = RecordKeys(session_factory(engine), keys)
    key1, key2 = record_keys.for_patient(ids["p1"]).id, record_keys.for_patient(ids["p2"]).id
    record_keys.destroy(ids["p2"])
    item = (
        "INSERT INTO batch_items (id, batch_id, slot, file, title, state, attempts, crashes, document_id)"
        " VALUES (:id, :batch, :slot, 'f.pdf', :title, :state, 0, 0, :doc)"
    )
    document = (
        "INSERT INTO documents (id, patient_id, source, source_document_id, batch_item_id, title, class_code, type_code,"
        " classified_by, confidence, needs_review, mime_type, size, content_hmac, object_key, record_key_id, wrapped_key)"
        " VALUES (:id, :patient, 'hospital:H', :id, :item, :title, '11', '60591-5', 'test', 1.0, false, 'application/pdf', 1,"
        " 'hmac', :id, :key, :wrapped)"
    )
    notification = (
        "INSERT INTO notifications (id, patient_id, recipient_id, kind, channel, address, subject, body, events, status, attempts,"
        " next_attempt_at) VALUES (:id, :patient, :recipient, 'access', 'email', :address, 's', 'b', 1, 'pending', 0, :at)"
    )
    with engine.begin() as db:
        db.execute(
            text("INSERT INTO batches (id, source, manifest_digest, total) VALUES (:id, 'hospital:H', 'digest', 3)"), {"id": ids["batch"]}
        )
        for name, slot, title, state, doc in (
            ("i1", 1, v["final"], "indexed", "d1"),
            ("i2", 2, v["waiting"], "queued", "x"),
            ("i3", 3, None, "indexed", "d2"),
        ):
            db.execute(
                text(item),
                {"id": ids[name], "batch": ids["batch"], "slot": f"row:{slot}", "title": title, "state": state, "doc": ids.get(doc, doc)},
            )
        db.execute(
            text(document), {"id": ids["d1"], "patient": ids["p1"], "item": ids["i1"], "title": v["document"], "key": key1, "wrapped": b"k"}
        )
        db.execute(
            text(document),
            {"id": ids["d2"], "patient": ids["p2"], "item": ids["i3"], "title": v["destroyed"], "key": key2, "wrapped": None},
        )
        contact = "INSERT INTO contacts (id, email, phone) VALUES (:id, :email, :phone)"
        db.execute(text(contact), {"id": ids["p1"], "email": v["patient_email"], "phone": v["patient_phone"]})
        db.execute(text(contact), {"id": DOCTOR, "email": v["doctor_email"], "phone": None})
        db.execute(text(contact), {"id": ids["p3"], "email": v["lone_email"], "phone": None})  # no record key yet
        at = dt.datetime.now(dt.UTC)
        db.execute(
            text(notification), {"id": ids["n1"], "patient": ids["p1"], "recipient": ids["p1"], "address": v["patient_email"], "at": at}
        )
        db.execute(text(notification), {"id": ids["n2"], "patient": ids["p1"], "recipient": DOCTOR, "address": v["doctor_email"], "at": at})
        line = check_line(2, _care_line(with_key("1850575123450")), dt.date.today())  # p1's line, its plain content hash as main kept it
        care = (
            "INSERT INTO care_events (source, line_id, patient_id, care_date, act_code, act_label, professional_id, professional_name,"
            " profession, amount_billed, amount_reimbursed, reimbursement_date, content_hash, feed_id) VALUES ('insurer:CNAM', 'L1',"
            " :patient, :day, :code, :label, :pro, :name, :profession, 51.70, 36.19, :day, :hash, 'feed')"
        )
        db.execute(text(care), {"patient": ids["p1"], "day": CARE_DATE, "code": line.act_code, "label": line.act_label,
                                "pro": line.professional_id, "name": line.professional_name, "profession": line.profession,
                                "hash": line.content_hash})  # fmt: skip
    return engine, keys, ids


def test_migration_0007_seals_existing_titles_and_addresses_and_they_read_back(database_url, tmp_path):
    from pipeline.carehistory.history import care_history
    from pipeline.core.settings import Settings
    from pipeline.documents.titles import document_titles, item_title
    from pipeline.index.models import BatchItem, Document, Notification
    from pipeline.notify.contacts import read_contact
    from pipeline.notify.dispatch import _address
    from pipeline.runtime import Runtime

    engine, keys, ids = _index_at_0004(database_url, tmp_path / "home")
    assert SEALED_BY_0007["document"].encode() in raw_dump(engine)
    upgrade(engine, keys=keys)

    dump = raw_dump(engine)
    assert [value for value in SEALED_BY_0007.values() if value.encode() in dump] == []
    v = SEALED_BY_0007
    rt = Runtime.from_settings(Settings(home=tmp_path / "home", database_url=database_url))
    with rt.sessions() as session:
        assert document_titles(rt, [session.get(Document, ids["d1"]), session.get(Document, ids["d2"])]) == {
            ids["d1"]: v["document"],
            ids["d2"]: None,
        }
        assert item_title(rt, session.get(BatchItem, ids["i2"])) == v["waiting"]
        assert session.get(BatchItem, ids["i1"]).title_sealed is None  # final: its document holds the title
        assert (read_contact(rt, session, ids["p1"]).email, read_contact(rt, session, ids["p1"]).phone) == (
            v["patient_email"],
            v["patient_phone"],
        )
        assert read_contact(rt, session, DOCTOR).email == v["doctor_email"]
        assert read_contact(rt, session, ids["p3"]).email == v["lone_email"]
        assert [_address(rt, session, session.get(Notification, ids[n])) for n in ("n1", "n2")] == [v["patient_email"], v["doctor_email"]]
        (care,) = care_history(session, ids["p1"], record_keys=rt.record_keys).items
        assert (care.act_code, care.act_label, care.professional_name) == ("CNPSY", v["act_label"], v["professional_name"])
    rt.close()
    engine.dispose()


def test_migration_0007_keeps_care_lines_recognisable_when_the_insurer_sends_them_again(database_url, tmp_path):
    from pipeline.carehistory.feedformat import ALL_FIELDS
    from pipeline.carehistory.feeds import process_chunk
    from pipeline.core.identity import with_key
    from pipeline.core.settings import Settings
    from pipeline.ingest.feed_intake import receive_feed
    from pipeline.runtime import Runtime
    from pipeline.status import feed_status

    engine, keys, _ = _index_at_0004(database_url, tmp_path / "home")
    upgrade(engine, keys=keys)
    engine.dispose()
    rt = Runtime.from_settings(Settings(home=tmp_path / "home", database_url=database_url))
    ins = with_key("1850575123450")
    path = tmp_path / "again.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_FIELDS)
        writer.writeheader()
        writer.writerows([_care_line(ins), _care_line(ins, line_id="L2"), _care_line(ins, line_id="L1", act_label="Autre acte")])
    chunks: list[str] = []
    feed = receive_feed(rt, path, "insurer:CNAM", chunks.append)
    for chunk_id in chunks:
        process_chunk(rt, chunk_id)
    with rt.sessions() as session:
        status = feed_status(session, feed.feed_id)
    # The same line L1 again changes nothing; L1 with another label is a conflict; L2 is new.
    assert [(r["line_id"], r["reason"]) for r in status["rejections"]] == [("L1", "duplicate_line")]
    assert (status["counts"]["accepted"], status["counts"]["unchanged"]) == (1, 1)
    rt.close()


def test_migration_0007_without_keys_changes_nothing_and_says_what_it_needs(database_url, tmp_path):
    from sqlalchemy import inspect

    from pipeline.index.db import KeysRequired

    engine, keys, _ = _index_at_0004(database_url, tmp_path / "home")
    with pytest.raises(KeysRequired, match="DMP_KEY_FILE"):
        upgrade(engine)
    with engine.connect() as connection:
        assert "title" in {column["name"] for column in inspect(connection).get_columns("documents")}
        assert "title_sealed" not in {column["name"] for column in inspect(connection).get_columns("documents")}
    upgrade(engine, keys=keys)  # the same upgrade with the keys goes through
    engine.dispose()


def test_migration_0007_downgrades_back_to_clear_columns(database_url, tmp_path):
    from sqlalchemy import text

    engine, keys, ids = _index_at_0004(database_url, tmp_path / "home")
    upgrade(engine, keys=keys)
    downgrade(engine, "0004", keys=keys)
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT title FROM documents WHERE id = :id"), {"id": ids["d1"]}).scalar() == SEALED_BY_0007["document"]
        )
        assert (
            connection.execute(text("SELECT email FROM contacts WHERE id = :id"), {"id": DOCTOR}).scalar() == SEALED_BY_0007["doctor_email"]
        )
    engine.dispose()


def test_dmp_db_upgrade_away_from_the_key_file_exits_2_and_names_it(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    engine, _, _ = _index_at_0004(url, tmp_path / "home")
    engine.dispose()
    env = {"DMP_DATABASE_URL": url, "DMP_HOME": str(tmp_path / "elsewhere")}
    result = CliRunner().invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 2
    assert "DMP_KEY_FILE" in result.output and "nothing was changed" in result.output
    result = CliRunner().invoke(app, ["db", "upgrade"], env={**env, "DMP_KEY_FILE": str(tmp_path / "home" / "keys.json")})
    assert result.exit_code == 0, result.output


def test_migration_0010_makes_every_existing_document_its_first_current_version(database_url, tmp_path):
    from sqlalchemy import text

    engine, keys, ids = _index_at_0004(database_url, tmp_path / "home")
    upgrade(engine, keys=keys)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT version, status, supersedes_id FROM documents WHERE id = :id"), {"id": ids["d1"]}).one()
    assert tuple(row) == (1, "current", None)
    engine.dispose()
