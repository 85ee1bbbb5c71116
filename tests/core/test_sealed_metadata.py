"""Titles and addresses sealed at rest: absent from a dump of the index, in clear through the API,
gone for good with a destroyed record."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.carehistory.feedformat import ALL_FIELDS
from pipeline.carehistory.feeds import process_chunk
from pipeline.core.clock import paris_date
from pipeline.core.keys import WrappedKey
from pipeline.core.sealedfields import (
    SealedFieldError,
    address_context,
    batch_key_context,
    care_details_context,
    contact_context,
    contact_key_context,
    document_title_context,
    open_text,
    quarantine_key_context,
)
from pipeline.core.settings import Settings
from pipeline.documents.process import process_item
from pipeline.documents.stored import destroy_record
from pipeline.documents.titles import document_titles
from pipeline.index.models import Batch, BatchItem, CareEvent, Contact, Document, Notification, Patient, RecordKey
from pipeline.ingest.feed_intake import receive_feed
from pipeline.ingest.intake import receive_batch
from pipeline.notify.channels import channels_from_settings
from pipeline.notify.contacts import read_contact, set_contact
from pipeline.notify.dispatch import dispatch
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.conftest import index_batch, raw_dump

pytestmark = pytest.mark.slow  # end to end through intake, workers, API and a raw dump

PATIENT_EMAIL, PATIENT_PHONE = "jeanne.martin@example.org", "+33612345678"
DOCTOR, DOCTOR_EMAIL, DOCTOR_PHONE = "10001234567", "dr.durand@example.org", "+33698765432"
ACT_CODE, ACT_LABEL, PSYCHIATRIST = "CNPSY", "Consultation psychiatrique", "Dr Sigmund Freud"


def _batch(root: Path, name: str, seed: int) -> tuple[Path, dict[str, str]]:
    """A sample batch whose titles are telling and unique; returns it and {source_document_id: title}."""
    batch = root / name
    generate_samples(batch, patients=2, documents=6, seed=seed, bad=False)
    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows):
        row["title"] = f"Synthèse psychiatrique {name} n°{number}"
    with (batch / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return batch, {row["source_document_id"]: row["title"] for row in rows}


def _care_lines(rt: Runtime, root: Path, patient_id: str) -> None:
    """Two reimbursed acts for the patient, through the insurer feed."""
    with rt.sessions() as session:
        ins = session.get(Patient, patient_id).ins
    day = (paris_date() - dt.timedelta(days=20)).isoformat()
    path = root / f"feed-{patient_id}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_FIELDS)
        writer.writeheader()
        for number in range(2):
            writer.writerow({"line_id": f"{patient_id}-{number}", "patient_ins": ins, "care_date": day, "act_code": ACT_CODE,
                             "act_label": ACT_LABEL, "professional_id": "10009999999", "professional_name": PSYCHIATRIST,
                             "profession": "psychiatrist", "amount_billed": "51.70", "amount_reimbursed": "36.19",
                             "reimbursement_date": day, "supersedes": ""})  # fmt: skip
    chunks: list[str] = []
    receive_feed(rt, path, "insurer:CNAM", chunks.append)
    for chunk_id in chunks:
        assert process_chunk(rt, chunk_id) == "done"


def _patient_ids(rt: Runtime) -> list[str]:
    with rt.sessions() as session:
        return sorted(session.scalars(select(Patient.id)))


def _with_contacts_and_messages(rt: Runtime, patient_id: str) -> None:
    """The patient's and their attending physician's addresses, and messages composed to them."""
    set_contact(rt, patient_id, PATIENT_EMAIL, PATIENT_PHONE)
    set_contact(rt, DOCTOR, DOCTOR_EMAIL, DOCTOR_PHONE)
    with rt.sessions() as session:
        session.execute(update(Patient).where(Patient.id == patient_id).values(notify_sms=True, attending_physician_id=DOCTOR))
        session.commit()
    assert dispatch(rt, channels_from_settings(rt.settings), flush=True).composed >= 2  # email and SMS to the patient


def test_a_dump_of_the_index_holds_no_title_or_address_in_clear(rt, tmp_path):
    indexed, indexed_titles = _batch(tmp_path, "indexed", seed=9)
    index_batch(rt, indexed, "hospital:CHU-DUMP")
    waiting, waiting_titles = _batch(tmp_path, "waiting", seed=10)
    sent: list[str] = []
    receive_batch(rt, waiting, "hospital:CHU-WAIT", sent.append)  # items queued, not yet processed
    _with_contacts_and_messages(rt, _patient_ids(rt)[0])
    _care_lines(rt, tmp_path, _patient_ids(rt)[0])

    dump = raw_dump(rt.engine)
    secrets = [*indexed_titles.values(), *waiting_titles.values(), PATIENT_EMAIL, PATIENT_PHONE, DOCTOR_EMAIL, DOCTOR_PHONE]
    secrets += [ACT_CODE, ACT_LABEL, PSYCHIATRIST, "psychiatrist"]
    assert b"Synth" not in dump
    assert [value for value in secrets if value.encode() in dump] == []
    with rt.sessions() as session:
        assert session.scalar(select(Notification.address_sealed).where(Notification.channel == "sms")) is not None


def test_a_waiting_item_keeps_its_title_sealed_until_its_document_holds_it(rt, tmp_path):
    batch, titles = _batch(tmp_path, "queue", seed=11)
    sent: list[str] = []
    receive_batch(rt, batch, "hospital:CHU-Q", sent.append)
    for item_id in sent:
        process_item(rt, item_id)
    with rt.sessions() as session:
        documents = list(session.scalars(select(Document)))
        assert session.scalars(select(BatchItem.title_sealed).where(BatchItem.title_sealed.is_not(None))).all() == []
    opened = document_titles(rt, documents)
    assert {d.source_document_id: opened[d.id] for d in documents} == titles


@pytest.fixture
def api(tmp_path):
    settings = Settings(home=tmp_path / "home")
    rt = Runtime.from_settings(settings, prepare=True)
    batch, titles = _batch(tmp_path, "api", seed=12)
    documents = index_batch(rt, batch, "hospital:CHU-API")
    with TestClient(create_app(settings)) as client:
        yield settings, rt, client, documents, titles
    rt.close()


def _bearer(settings: Settings, sub: str, kind: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub, kind, **claims)}"}


def test_the_api_lists_reads_and_exports_documents_with_their_titles(api):
    settings, _, client, documents, titles = api
    patient_id = documents[0].patient_id
    patient = _bearer(settings, patient_id, "patient")
    mine = {d.id: titles[d.source_document_id] for d in documents if d.patient_id == patient_id}

    listed = client.get(f"/v1/patients/{patient_id}/documents", headers=patient).json()["items"]
    assert {item["id"]: item["title"] for item in listed} == mine
    for document_id, title in mine.items():
        assert client.get(f"/v1/patients/{patient_id}/documents/{document_id}", headers=patient).json()["title"] == title
    export = client.get(f"/v1/patients/{patient_id}/export", headers=patient)
    index = json.loads(zipfile.ZipFile(io.BytesIO(export.content)).read("index.json"))
    assert {entry["id"]: entry["title"] for entry in index["documents"]} == mine


def test_listing_documents_unwraps_the_record_key_once_not_once_per_title(api, monkeypatch):
    settings, _, client, documents, _ = api
    patient_id = documents[0].patient_id
    served: Runtime = client.app.state.runtime
    served.record_keys._cache.clear()
    unwraps: list[str] = []
    unwrap = served.keys.unwrap
    monkeypatch.setattr(served.keys, "unwrap", lambda wrapped, context: unwraps.append(context) or unwrap(wrapped, context))
    listed = client.get(f"/v1/patients/{patient_id}/documents", headers=_bearer(settings, patient_id, "patient")).json()["items"]
    assert len(listed) > 1 and all(item["title"] for item in listed)
    assert len(unwraps) == 1


def test_the_api_returns_the_care_history_with_its_acts_and_professionals(api, tmp_path):
    settings, rt, client, documents, _ = api
    patient_id = documents[0].patient_id
    _care_lines(rt, tmp_path, patient_id)
    items = client.get(f"/v1/patients/{patient_id}/care-history", headers=_bearer(settings, patient_id, "patient")).json()["items"]
    assert [(i["act_code"], i["act_label"], i["professional_name"], i["profession"]) for i in items] == [
        (ACT_CODE, ACT_LABEL, PSYCHIATRIST, "psychiatrist")
    ] * 2


def test_the_api_returns_the_patients_and_the_professionals_addresses(api):
    settings, _, client, documents, _ = api
    patient_id = documents[0].patient_id
    patient = _bearer(settings, patient_id, "patient")
    doctor = _bearer(settings, DOCTOR, "professional", profession="physician", rpps=DOCTOR)
    choices = {"email": True, "sms": True, "email_address": PATIENT_EMAIL, "phone": PATIENT_PHONE}
    assert client.put(f"/v1/patients/{patient_id}/notifications", json=choices, headers=patient).status_code == 200
    assert client.put("/v1/me/contact", json={"email": DOCTOR_EMAIL, "phone": DOCTOR_PHONE}, headers=doctor).status_code == 200

    settings_read = client.get(f"/v1/patients/{patient_id}/notifications", headers=patient).json()
    assert (settings_read["email_address"], settings_read["phone"]) == (PATIENT_EMAIL, PATIENT_PHONE)
    contact = client.get("/v1/me/contact", headers=doctor).json()
    assert (contact["email"], contact["phone"]) == (DOCTOR_EMAIL, DOCTOR_PHONE)


def _keys_still_held(rt: Runtime) -> list[bytes]:
    """Every key the deployment can still open: record keys, batch keys, professionals' contact keys."""
    keys: list[bytes] = []
    with rt.sessions() as session:
        for row in session.scalars(select(RecordKey).where(RecordKey.wrapped.is_not(None))):
            keys.append(rt.record_keys.get(row.id).key)
        for batch in session.scalars(select(Batch).where(Batch.wrapped_key.is_not(None))):
            keys.append(rt.keys.unwrap(WrappedKey(batch.master_key_id, batch.wrapped_key), batch_key_context(batch.id)))
        for contact in session.scalars(select(Contact).where(Contact.wrapped_key.is_not(None))):
            keys.append(rt.keys.unwrap(WrappedKey(contact.master_key_id, contact.wrapped_key), contact_key_context(contact.id)))
    return keys


def test_a_destroyed_records_titles_and_addresses_cannot_be_recovered(rt, tmp_path):
    batch, _ = _batch(tmp_path, "destroyed", seed=13)
    documents = index_batch(rt, batch, "hospital:CHU-GONE")
    gone, kept = _patient_ids(rt)
    _with_contacts_and_messages(rt, gone)
    _care_lines(rt, tmp_path, gone)
    # What a backup taken before the destruction holds of the record.
    with rt.sessions() as session:
        contact = session.get(Contact, gone)
        lines = session.scalars(select(CareEvent).where(CareEvent.patient_id == gone)).all()
        saved = [(d.title_sealed, document_title_context(d.id, gone)) for d in documents if d.patient_id == gone]
        saved += [(contact.email_sealed, contact_context(gone, "email")), (contact.phone_sealed, contact_context(gone, "phone"))]
        saved += [
            (n.address_sealed, address_context(n.id, n.recipient_id))
            for n in session.scalars(select(Notification).where(Notification.recipient_id == gone))
        ]
    saved += [(line.details_sealed, care_details_context(line.source, line.line_id, gone)) for line in lines]
    assert len(saved) > 6 and all(blob for blob, _ in saved)

    destroy_record(rt, gone)

    assert all(title is None for title in document_titles(rt, [d for d in documents if d.patient_id == gone]).values())
    with rt.sessions() as session:
        assert read_contact(rt, session, gone).email is None
    held = _keys_still_held(rt)
    assert held  # the other patient's record key, the batch key, the physician's contact key
    for blob, context in saved:
        for key in held:
            with pytest.raises(SealedFieldError):
                open_text(key, blob, context)
    assert all(title is not None for title in document_titles(rt, [d for d in documents if d.patient_id == kept]).values())


def test_key_rotation_rewraps_contact_and_batch_keys_and_what_they_seal_still_opens(embedded_settings, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.documents.titles import item_title

    rt = Runtime.from_settings(embedded_settings, prepare=True)
    batch, titles = _batch(tmp_path, "rotate", seed=15)
    sent: list[str] = []
    receive_batch(rt, batch, "hospital:CHU-ROT", sent.append)
    set_contact(rt, DOCTOR, DOCTOR_EMAIL, None)
    rt.close()

    result = CliRunner().invoke(app, ["keys", "rotate"], env={"DMP_HOME": str(embedded_settings.home)})
    assert result.exit_code == 0, result.output
    rotated = Runtime.from_settings(embedded_settings)
    with rotated.sessions() as session:
        assert {c.master_key_id for c in session.scalars(select(Contact))} == {"k2"}
        assert {b.master_key_id for b in session.scalars(select(Batch))} == {"k2"}
        assert read_contact(rotated, session, DOCTOR).email == DOCTOR_EMAIL
        items = list(session.scalars(select(BatchItem)))
    assert {item.source_document_id: item_title(rotated, item) for item in items} == titles
    rotated.close()


def test_key_rotation_rewraps_the_keys_of_quarantine_copies_which_still_open(embedded_settings, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.core.sealing import unseal
    from pipeline.documents.process import mark_retries_exhausted

    rt = Runtime.from_settings(embedded_settings, prepare=True)
    batch, _ = _batch(tmp_path, "quarantined", seed=16)
    sent: list[str] = []
    receive_batch(rt, batch, "hospital:CHU-ROT", sent.append)
    with rt.sessions() as session:
        waiting = session.get(BatchItem, sent[0])
    with rt.inbox.open(waiting.inbox_key, waiting.inbox_member) as raw:
        original = raw.read()
    mark_retries_exhausted(rt, sent[0])  # rejected: its bytes kept in quarantine, encrypted
    rt.close()

    result = CliRunner().invoke(app, ["keys", "rotate"], env={"DMP_HOME": str(embedded_settings.home)})
    assert result.exit_code == 0, result.output
    rotated = Runtime.from_settings(embedded_settings)
    with rotated.sessions() as session:
        item = session.get(BatchItem, sent[0])
    assert item.quarantine_master_key_id == "k2"
    context = quarantine_key_context(item.id)
    key = rotated.keys.unwrap(WrappedKey(item.quarantine_master_key_id, item.quarantine_wrapped_key), context)
    assert b"".join(unseal(rotated.store, item.quarantine_key, key, context, rotated.hasher())) == original
    rotated.close()
