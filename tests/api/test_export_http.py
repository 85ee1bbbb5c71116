"""The copy of the record (export) through the HTTP API on SQLite and PostgreSQL (docs/domain.md, "Documents over
time"): besides every document the reader may read, the care history of the 24-month window and the access log as
the reader may read it, each as CSV and JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import uuid
import zipfile

import pytest

from pipeline.carehistory.feedformat import ALL_FIELDS
from pipeline.core.clock import paris_date
from tests.api.life import DR, INSURER, World, new_ins, patient_of, world

pytestmark = pytest.mark.slow  # deposits and a feed through the API and its in-process workers
__all__ = ["world"]
PARTS = ("care_history.csv", "care_history.json", "access_log.csv", "access_log.json")


def _feed(world: World, ins: str, lines: dict[str, dt.date]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ALL_FIELDS, lineterminator="\n")
    writer.writeheader()
    for line_id, day in lines.items():
        writer.writerow({"line_id": line_id, "patient_ins": ins, "care_date": day.isoformat(), "act_code": "C", "act_label": "Consultation",
                         "professional_id": DR, "professional_name": "Dr Martin", "profession": "physician", "amount_billed": "26.50",
                         "amount_reimbursed": "18.55", "reimbursement_date": day.isoformat(), "supersedes": ""})  # fmt: skip
    headers = {**world.keys[INSURER], "Content-Type": "text/csv"}
    answer = world.client.post("/v1/ingest/feeds", content=out.getvalue().encode(), headers=headers)
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    while world.client.get(answer.json()["status_url"], headers=world.keys[INSURER]).json()["counts"]["pending_lines"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _record(world: World) -> tuple[str, str, dict[str, str]]:
    """A record with a report, a care line inside the window and one outside it, read once by DR: (ins, patient id, line ids)."""
    ins = new_ins()
    assert world.deposit(ins, f"CR-{uuid.uuid4()}", b"Compte rendu\n")["state"] == "indexed"
    patient_id = patient_of(world, ins)
    today = paris_date()
    lines = {"recent": f"L-{uuid.uuid4()}", "old": f"L-{uuid.uuid4()}"}
    _feed(world, ins, {lines["recent"]: today - dt.timedelta(days=30), lines["old"]: today - dt.timedelta(days=2 * 366 + 5)})
    world.client.post(f"/v1/patients/{patient_id}/professionals/{DR}/authorize", headers=world.patient(patient_id))
    assert world.client.get(f"/v1/patients/{patient_id}/documents", headers=world.professional(DR)).status_code == 200
    return ins, patient_id, lines


def _export(world: World, patient_id: str, headers: dict[str, str]) -> zipfile.ZipFile:
    response = world.client.get(f"/v1/patients/{patient_id}/export", headers=headers)
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(response.content))


def _csv_rows(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8-sig"))))


def test_the_export_holds_the_care_history_of_the_window_as_csv_and_json(world: World) -> None:
    _, patient_id, lines = _record(world)
    archive = _export(world, patient_id, world.patient(patient_id))
    assert set(PARTS) <= set(archive.namelist())
    as_json = json.loads(archive.read("care_history.json"))
    assert as_json["window_months"] == 24
    assert [line["line_id"] for line in as_json["lines"]] == [lines["recent"]]  # the older line is outside the window
    rows = _csv_rows(archive, "care_history.csv")
    assert [(r["line_id"], r["act_label"], r["amount_reimbursed"]) for r in rows] == [(lines["recent"], "Consultation", "18.55")]


def test_the_export_holds_the_whole_access_log_as_csv_and_json(world: World) -> None:
    _, patient_id, _ = _record(world)
    archive = _export(world, patient_id, world.patient(patient_id))
    entries = json.loads(archive.read("access_log.json"))["entries"]
    who_did_what = {(e["actor_id"], e["action"]) for e in entries}
    assert {(DR, "list"), (patient_id, "export"), ("hospital:CHU-LIFE", "deposit")} <= who_did_what
    rows = _csv_rows(archive, "access_log.csv")
    assert [(r["actor_id"], r["action"], r["at"]) for r in rows] == [(e["actor_id"], e["action"], e["at"]) for e in entries]


def test_a_representatives_export_leaves_out_the_patients_own_actions_from_the_log(world: World) -> None:
    from pipeline.access.representatives import add_representative

    ins, patient_id, _ = _record(world)
    with world.rt.sessions() as session:
        add_representative(session, ins, "parent-1")
        session.commit()
    world.client.get(f"/v1/patients/{patient_id}/documents", headers=world.patient(patient_id))
    archive = _export(world, patient_id, world.token("parent-1", "legal_representative"))
    entries = json.loads(archive.read("access_log.json"))["entries"]
    assert entries and patient_id not in {e["actor_id"] for e in entries}
    assert ("parent-1", "export") in {(e["actor_id"], e["action"]) for e in entries}


def test_the_export_holds_every_version_the_reader_may_read_with_its_status(world: World) -> None:
    ins, sdid = new_ins(), f"CR-{uuid.uuid4()}"
    first = world.deposit(ins, sdid, b"v1\n")["document_id"]
    second = world.deposit(ins, sdid, b"v2\n", version_action="replace", title="v2")["document_id"]
    patient_id = patient_of(world, ins)
    index = json.loads(_export(world, patient_id, world.patient(patient_id)).read("index.json"))["documents"]
    assert sorted((d["id"], d["status"], d["version"]) for d in index) == sorted([(first, "superseded", 1), (second, "current", 2)])
