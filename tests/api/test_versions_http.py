"""Documents over time through the HTTP API (docs/domain.md, "Documents over time"): a source replaces,
deprecates, withdraws its document and holds it from the patient; the policy decides every version."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from pipeline.index.models import AuditEntry, Outbox
from tests.api.life import DR, HOSPITAL, OTHER, World, new_ins, patient_of, world

pytestmark = pytest.mark.slow  # deposits through the API and its in-process workers
__all__ = ["world"]


def _record(world: World, body: bytes = b"Compte rendu, premiere version.\n") -> tuple[str, str, str, str]:
    """A new patient with one report of HOSPITAL's, the physician DR in the care team:
    (ins, patient id, document id, its source_document_id)."""
    ins, sdid = new_ins(), f"CR-{uuid.uuid4()}"
    item = world.deposit(ins, sdid, body)
    assert item["state"] == "indexed", item
    patient_id = patient_of(world, ins)
    authorized = world.client.post(f"/v1/patients/{patient_id}/professionals/{DR}/authorize", headers=world.patient(patient_id))
    assert authorized.status_code == 200
    return ins, patient_id, item["document_id"], sdid


def _listed(world: World, patient_id: str, headers: dict[str, str], **params: str) -> list[str]:
    page = world.client.get(f"/v1/patients/{patient_id}/documents", headers=headers, params=params).json()
    return [d["id"] for d in page["items"]]


def test_a_replacement_supersedes_the_old_version_which_stays_readable_in_the_history(world: World) -> None:
    ins, patient_id, first, sdid = _record(world)
    item = world.deposit(ins, sdid, b"Compte rendu, version corrigee.\n", version_action="replace", title="Compte rendu corrige")
    assert item["state"] == "indexed"
    second = item["document_id"]
    me = world.patient(patient_id)
    assert _listed(world, patient_id, me) == [second]
    old = world.client.get(f"/v1/patients/{patient_id}/documents/{first}", headers=me).json()
    assert (old["status"], old["version"], old["superseded_by"]) == ("superseded", 1, second)
    content = world.client.get(f"/v1/patients/{patient_id}/documents/{first}/content", headers=me).content
    assert content == b"Compte rendu, premiere version.\n"
    history = world.client.get(f"/v1/patients/{patient_id}/documents/{second}/history", headers=me).json()
    assert [(d["id"], d["status"], d["version"], d["supersedes"]) for d in history] == [
        (first, "superseded", 1, None),
        (second, "current", 2, first),
    ]
    assert sorted(_listed(world, patient_id, me, include_superseded="true")) == sorted([first, second])


def test_a_changed_document_under_the_same_id_without_version_action_is_still_a_duplicate_conflict(world: World) -> None:
    ins, patient_id, first, sdid = _record(world)
    item = world.deposit(ins, sdid, b"Autre contenu.\n", title="Autre titre")
    assert (item["state"], item["reason"]) == ("rejected", "duplicate_conflict")
    assert _listed(world, patient_id, world.patient(patient_id)) == [first]


def test_the_policy_decides_each_version_of_a_history_on_its_own(world: World) -> None:
    ins, patient_id, first, sdid = _record(world)
    second = world.deposit(ins, sdid, b"Version 2.\n", version_action="replace", title="v2")["document_id"]
    me, doctor = world.patient(patient_id), world.professional(DR)
    assert world.client.post(f"/v1/patients/{patient_id}/documents/{first}/mask", headers=me).status_code == 200
    # DR authored the report: a masked version stays visible to its author. Another physician in the care team does not see it.
    other = "10009998887"
    world.client.post(f"/v1/patients/{patient_id}/professionals/{other}/authorize", headers=me)
    seen = world.client.get(f"/v1/patients/{patient_id}/documents/{second}/history", headers=world.professional(other)).json()
    assert [d["id"] for d in seen] == [second]
    assert world.client.get(f"/v1/patients/{patient_id}/documents/{first}/history", headers=world.professional(other)).status_code == 404
    by_author = world.client.get(f"/v1/patients/{patient_id}/documents/{second}/history", headers=doctor).json()
    assert [d["id"] for d in by_author] == [first, second]
    outsider = world.professional("10005554443")
    assert world.client.get(f"/v1/patients/{patient_id}/documents/{second}/history", headers=outsider).status_code == 403


def test_a_deprecated_document_leaves_the_listing_and_stays_in_its_history(world: World) -> None:
    _, patient_id, first, sdid = _record(world)
    answer = world.client.post("/v1/ingest/documents/deprecate", json={"source_document_id": sdid}, headers=world.keys[HOSPITAL])
    assert answer.status_code == 200 and answer.json()["status"] == "superseded"
    me = world.patient(patient_id)
    assert _listed(world, patient_id, me) == []
    history = world.client.get(f"/v1/patients/{patient_id}/documents/{first}/history", headers=me).json()
    assert [d["status"] for d in history] == ["superseded"]


def test_a_withdrawn_document_is_gone_for_everyone_its_audit_entries_stay_and_the_patient_is_told(world: World) -> None:
    _, patient_id, document_id, sdid = _record(world)
    me = world.patient(patient_id)
    assert world.client.get(f"/v1/patients/{patient_id}/documents/{document_id}", headers=me).status_code == 200
    answer = world.client.post("/v1/ingest/documents/withdraw", json={"source_document_id": sdid}, headers=world.keys[HOSPITAL])
    assert answer.status_code == 200 and answer.json() == {"withdrawn": [document_id]}
    for headers in (me, world.professional(DR)):
        assert world.client.get(f"/v1/patients/{patient_id}/documents/{document_id}", headers=headers).status_code == 404
    versions = world.client.get("/v1/ingest/documents/versions", params={"source_document_id": sdid}, headers=world.keys[HOSPITAL])
    assert [v["status"] for v in versions.json()] == ["entered-in-error"]
    with world.rt.sessions() as session:
        actions = set(session.scalars(select(AuditEntry.action).where(AuditEntry.document_id == document_id)))
        told = session.scalars(select(Outbox).where(Outbox.patient_id == patient_id, Outbox.kind == "document_withdrawn")).all()
    assert {"deposit", "read_metadata", "withdraw"} <= actions
    assert [(row.ref_id, row.source) for row in told] == [(document_id, HOSPITAL)]
    log = world.client.get(f"/v1/patients/{patient_id}/access-log", headers=me).json()
    assert {"deposit", "withdraw"} <= {e["action"] for e in log if e["document_id"] == document_id}


def test_the_patient_is_told_of_a_withdrawal_by_whom_and_when_never_what(world: World) -> None:
    import datetime as dt

    from pipeline.index.models import Notification
    from pipeline.notify.dispatch import DispatchReport, compose_due

    ins, sdid = new_ins(), f"CR-{uuid.uuid4()}"
    world.deposit(ins, sdid, b"Serologie VIH positive.\n", title="Sérologie VIH")
    patient_id = patient_of(world, ins)
    compose_due(world.rt, dt.datetime.now(dt.UTC), DispatchReport(), flush=True)  # the deposit's own message first
    world.client.post("/v1/ingest/documents/withdraw", json={"source_document_id": sdid}, headers=world.keys[HOSPITAL])
    compose_due(world.rt, dt.datetime.now(dt.UTC), DispatchReport(), flush=True)
    with world.rt.sessions() as session:
        told = session.scalars(
            select(Notification).where(Notification.patient_id == patient_id, Notification.kind == "document_withdrawn")
        ).all()
    assert told and all("CHU-LIFE" in n.body and "VIH" not in n.subject + n.body and "11488" not in n.body for n in told)


def test_withdrawing_again_answers_the_same(world: World) -> None:
    _, _, document_id, sdid = _record(world)
    for _ in range(2):
        answer = world.client.post("/v1/ingest/documents/withdraw", json={"source_document_id": sdid}, headers=world.keys[HOSPITAL])
        assert (answer.status_code, answer.json()) == (200, {"withdrawn": [document_id]})


def test_a_withdrawn_document_takes_no_new_version(world: World) -> None:
    ins, _, _, sdid = _record(world)
    world.client.post("/v1/ingest/documents/withdraw", json={"source_document_id": sdid}, headers=world.keys[HOSPITAL])
    item = world.deposit(ins, sdid, b"Encore.\n", version_action="replace", title="encore")
    assert (item["state"], item["reason"]) == ("rejected", "document_withdrawn")


def test_another_source_gets_the_answer_of_a_document_that_does_not_exist(world: World) -> None:
    _, _, _, sdid = _record(world)
    for route in ("deprecate", "withdraw"):
        theirs = world.client.post(f"/v1/ingest/documents/{route}", json={"source_document_id": sdid}, headers=world.keys[OTHER])
        missing = world.client.post(f"/v1/ingest/documents/{route}", json={"source_document_id": "CR-NONE"}, headers=world.keys[OTHER])
        assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json()) == (404, missing.json())


def test_the_author_holds_its_document_from_the_patient_then_releases_it(world: World) -> None:
    _, patient_id, document_id, sdid = _record(world)
    me, url = world.patient(patient_id), f"/v1/patients/{patient_id}/documents/{document_id}"
    hold = {"source_document_id": sdid, "announcement_date": "2099-01-01"}
    assert world.client.put("/v1/ingest/documents/visibility", json=hold, headers=world.keys[HOSPITAL]).status_code == 200
    assert world.client.get(url, headers=me).status_code == 404
    assert world.client.get(url, headers=world.professional(DR)).status_code == 200
    release = {"source_document_id": sdid, "announcement_date": None}
    assert world.client.put("/v1/ingest/documents/visibility", json=release, headers=world.keys[HOSPITAL]).status_code == 200
    assert world.client.get(url, headers=me).status_code == 200


def test_a_source_route_on_documents_wants_a_source_key(world: World) -> None:
    _, patient_id, _, sdid = _record(world)
    answer = world.client.post("/v1/ingest/documents/withdraw", json={"source_document_id": sdid}, headers=world.patient(patient_id))
    assert answer.status_code == 401


def test_a_sources_json_request_on_its_documents_is_bounded_like_any_json_body(world: World) -> None:
    huge = {"source_document_id": "x" * 200, "padding": "y" * 70_000}
    answer = world.client.post("/v1/ingest/documents/deprecate", json=huge, headers=world.keys[HOSPITAL])
    assert (answer.status_code, answer.json()["code"]) == (413, "payload_too_large")


def test_a_new_version_for_another_patient_is_refused(world: World) -> None:
    _, patient_id, first, sdid = _record(world)
    item = world.deposit(new_ins(), sdid, b"Pour un autre patient.\n", version_action="replace", title="autre")
    assert (item["state"], item["reason"]) == ("rejected", "other_patients_document")
    assert _listed(world, patient_id, world.patient(patient_id)) == [first]


def test_the_same_document_sent_again_for_another_patient_is_not_linked_across_records(world: World) -> None:
    _, _, _, sdid = _record(world)
    item = world.deposit(new_ins(), sdid, b"Compte rendu, premiere version.\n", title="Compte rendu bis")
    assert (item["state"], item["reason"]) == ("rejected", "other_patients_document")
