"""Document versions through FHIR MHD over HTTP, on SQLite and PostgreSQL: a DocumentReference that replaces
another (ITI-65 relatesTo) is its new version; ITI-67 finds versions by status as /v1 lists them; ITI-68 reads a
superseded version and answers a withdrawn one as missing; a DocumentReference entered-in-error or superseded
withdraws or deprecates the source's document it names."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReferenceRelatesTo
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.reference import Reference
from sqlalchemy import select, update

from pipeline.index.models import Outbox, SubmissionSet
from tests.api.life import DR, HOSPITAL, OTHER, World, new_ins, patient_of, world
from tests.sharing.bundles import INS_SYSTEM, Doc, body, bundle, pdf_bytes

pytestmark = pytest.mark.slow  # documents through the API and its in-process workers
__all__ = ["world"]
FHIR = {"Content-Type": "application/fhir+json"}


def _provide(world: World, doc: Doc, replaces: Reference | None = None, source: str = HOSPITAL) -> Any:
    value = bundle([doc], ins=doc.ins)
    if replaces is not None:
        value.entry[1].resource.relatesTo = [DocumentReferenceRelatesTo(code="replaces", target=replaces)]
    return world.client.post("/fhir", content=body(value), headers={**world.keys[source], **FHIR})


def _change(world: World, doc: Doc, status: str, source: str = HOSPITAL, submission_id: str | None = None) -> Any:
    """An ITI-65 Bundle whose one DocumentReference changes the status of the document `doc` names."""
    value = bundle([doc], submission_id=submission_id, ins=doc.ins)
    value.entry[1].resource.status = status
    return world.client.post("/fhir", content=body(value), headers={**world.keys[source], **FHIR})


def _provided(world: World, doc: Doc, replaces: Reference | None = None) -> dict[str, Any]:
    """One document provided by HOSPITAL through ITI-65 and processed: its item's final status."""
    answer = _provide(world, doc, replaces)
    assert answer.status_code == 200, answer.text
    (item,) = world.wait(answer.headers["location"], world.keys[HOSPITAL])["items"]
    assert item["state"] == "indexed", item
    return item  # type: ignore[no-any-return]


def _replaced(world: World) -> tuple[str, str, str, Doc]:
    """A new patient's report provided, then replaced through ITI-65: (patient id, first id, second id, the first Doc)."""
    first_doc = Doc(pdf_bytes("Compte rendu v1"), ins=new_ins(), rpps=DR)
    first = _provided(world, first_doc)["document_id"]
    second_doc = Doc(pdf_bytes("Compte rendu v2"), ins=first_doc.ins, rpps=DR)
    second = _provided(world, second_doc, Reference(reference=f"DocumentReference/{first}"))["document_id"]
    return patient_of(world, first_doc.ins), first, second, first_doc


def _search(world: World, ins: str, patient_id: str, **params: str) -> Bundle:
    answer = world.client.get("/fhir/DocumentReference", params={"patient.identifier": f"{INS_SYSTEM}|{ins}", **params},
                              headers=world.patient(patient_id))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return Bundle.model_validate_json(answer.content)


def _found(found: Bundle) -> list[tuple[str, str]]:
    return sorted((entry.resource.id, entry.resource.status) for entry in found.entry or [])


def test_a_document_reference_that_replaces_another_is_its_new_version_and_the_old_one_superseded(world: World) -> None:
    patient_id, first, second, doc = _replaced(world)
    found = _search(world, doc.ins, patient_id)
    assert (found.total, _found(found)) == (1, [(second, "current")])
    (relation,) = found.entry[0].resource.relatesTo
    assert (relation.code, relation.target.reference) == ("replaces", f"DocumentReference/{first}")
    history = world.client.get(f"/v1/patients/{patient_id}/documents/{second}/history", headers=world.patient(patient_id)).json()
    assert [(d["id"], d["status"], d["version"]) for d in history] == [(first, "superseded", 1), (second, "current", 2)]


def test_a_search_by_status_finds_superseded_versions_as_asked(world: World) -> None:
    patient_id, first, second, doc = _replaced(world)
    assert _found(_search(world, doc.ins, patient_id, status="superseded")) == [(first, "superseded")]
    both = _search(world, doc.ins, patient_id, status="current,superseded")
    assert (both.total, _found(both)) == (2, sorted([(first, "superseded"), (second, "current")]))


def test_a_replacement_may_name_the_replaced_document_by_its_unique_id(world: World) -> None:
    first_doc = Doc(pdf_bytes("Compte rendu v1"), ins=new_ins(), rpps=DR)
    first = _provided(world, first_doc)["document_id"]
    target = Reference(identifier=Identifier(system="urn:ietf:rfc:3986", value=first_doc.unique_id))
    second = _provided(world, Doc(pdf_bytes("v2"), ins=first_doc.ins, rpps=DR), target)["document_id"]
    patient_id = patient_of(world, first_doc.ins)
    history = world.client.get(f"/v1/patients/{patient_id}/documents/{second}/history", headers=world.patient(patient_id)).json()
    assert [d["id"] for d in history] == [first, second]


def test_a_superseded_version_is_retrieved_as_the_history_reads_it(world: World) -> None:
    patient_id, first, _, doc = _replaced(world)
    answer = world.client.get(f"/fhir/Binary/{first}", headers=world.patient(patient_id))
    assert (answer.status_code, answer.content) == (200, doc.content)


def test_a_withdrawn_document_is_found_by_no_search_and_retrieved_as_missing(world: World) -> None:
    doc = Doc(pdf_bytes("Envoye par erreur"), ins=new_ins(), rpps=DR)
    document_id = _provided(world, doc)["document_id"]
    patient_id = patient_of(world, doc.ins)
    withdrawn = world.client.post("/v1/ingest/documents/withdraw", json={"source_document_id": doc.unique_id}, headers=world.keys[HOSPITAL])
    assert withdrawn.status_code == 200, withdrawn.text
    for status in ("current", "superseded", "entered-in-error", "current,superseded,entered-in-error"):
        assert _search(world, doc.ins, patient_id, status=status).total == 0
    for kind in ("Binary", "DocumentReference"):
        missing = world.client.get(f"/fhir/{kind}/{document_id}-x", headers=world.patient(patient_id))
        answer = world.client.get(f"/fhir/{kind}/{document_id}", headers=world.patient(patient_id))
        assert (answer.status_code, answer.content) == (404, missing.content)


def test_replacing_another_sources_document_is_refused_as_replacing_a_missing_one(world: World) -> None:
    doc = Doc(pdf_bytes("Compte rendu"), ins=new_ins(), rpps=DR)
    first = _provided(world, doc)["document_id"]
    again = Doc(pdf_bytes("Autre"), ins=doc.ins, rpps=DR)
    theirs = _provide(world, again, Reference(reference=f"DocumentReference/{first}"), source=OTHER)
    missing = _provide(world, again, Reference(reference="DocumentReference/no-such-document"), source=OTHER)
    assert theirs.status_code == missing.status_code == 422
    codes = [OperationOutcome.model_validate_json(a.content).issue[0].details.coding[0].code for a in (theirs, missing)]
    assert codes == ["replaced_document_not_found"] * 2
    assert theirs.json() == missing.json()


def _entry_locations(answer: Any) -> list[tuple[str, str | None]]:
    return [(e.response.status, e.response.location) for e in Bundle.model_validate_json(answer.content).entry]


def test_a_document_reference_entered_in_error_withdraws_the_document_and_tells_the_patient(world: World) -> None:
    doc = Doc(pdf_bytes("Envoye par erreur"), ins=new_ins(), rpps=DR)
    document_id = _provided(world, doc)["document_id"]
    patient_id = patient_of(world, doc.ins)
    answer = _change(world, doc, "entered-in-error")
    assert answer.status_code == 200, answer.text
    assert ("200 OK", f"DocumentReference/{document_id}") in _entry_locations(answer)
    assert _search(world, doc.ins, patient_id).total == 0
    missing = world.client.get(f"/fhir/Binary/{document_id}-x", headers=world.patient(patient_id))
    gone = world.client.get(f"/fhir/Binary/{document_id}", headers=world.patient(patient_id))
    assert (gone.status_code, gone.content) == (404, missing.content)
    with world.rt.sessions() as session:
        told = session.scalars(select(Outbox).where(Outbox.patient_id == patient_id, Outbox.kind == "document_withdrawn")).all()
    assert [(row.ref_id, row.source) for row in told] == [(document_id, HOSPITAL)]


def test_a_document_reference_superseded_deprecates_the_document_kept_in_its_history(world: World) -> None:
    doc = Doc(pdf_bytes("Compte rendu"), ins=new_ins(), rpps=DR)
    document_id = _provided(world, doc)["document_id"]
    patient_id = patient_of(world, doc.ins)
    answer = _change(world, doc, "superseded")
    assert answer.status_code == 200, answer.text
    assert ("200 OK", f"DocumentReference/{document_id}") in _entry_locations(answer)
    assert _found(_search(world, doc.ins, patient_id, status="superseded")) == [(document_id, "superseded")]
    history = world.client.get(f"/v1/patients/{patient_id}/documents/{document_id}/history", headers=world.patient(patient_id)).json()
    assert [(d["id"], d["status"]) for d in history] == [(document_id, "superseded")]


def test_a_bundle_may_provide_a_new_document_and_withdraw_another_at_once(world: World) -> None:
    wrong = Doc(pdf_bytes("Envoye par erreur"), ins=new_ins(), rpps=DR)
    wrong_id = _provided(world, wrong)["document_id"]
    patient_id = patient_of(world, wrong.ins)
    value = bundle([Doc(pdf_bytes("Le bon compte rendu"), ins=wrong.ins, rpps=DR), wrong], ins=wrong.ins)
    value.entry[3].resource.status = "entered-in-error"  # List, new DocumentReference, its Binary, then the withdrawal
    answer = world.client.post("/fhir", content=body(value), headers={**world.keys[HOSPITAL], **FHIR})
    assert answer.status_code == 200, answer.text
    (item,) = world.wait(answer.headers["location"], world.keys[HOSPITAL])["items"]
    assert item["state"] == "indexed"
    locations = _entry_locations(answer)
    assert locations[1] == ("201 Created", f"DocumentReference/{item['document_id']}")
    assert locations[3] == ("200 OK", f"DocumentReference/{wrong_id}")
    assert _found(_search(world, wrong.ins, patient_id)) == [(item["document_id"], "current")]


def test_a_status_change_sent_again_is_answered_the_same_and_tells_the_patient_once(world: World) -> None:
    doc = Doc(pdf_bytes("Envoye par erreur"), ins=new_ins(), rpps=DR)
    document_id = _provided(world, doc)["document_id"]
    patient_id = patient_of(world, doc.ins)
    replay_id = f"urn:uuid:{uuid.uuid4()}"
    first = _change(world, doc, "entered-in-error", submission_id=replay_id)
    again = _change(world, doc, "entered-in-error", submission_id=replay_id)
    assert (first.status_code, again.status_code) == (200, 200)
    assert _entry_locations(first) == _entry_locations(again)
    with world.rt.sessions() as session:
        told = session.scalars(select(Outbox.ref_id).where(Outbox.patient_id == patient_id, Outbox.kind == "document_withdrawn")).all()
    assert list(told) == [document_id]


def test_a_status_change_sent_again_after_a_newer_version_changes_nothing(world: World) -> None:
    doc = Doc(pdf_bytes("Compte rendu v1"), ins=new_ins(), rpps=DR)
    first = _provided(world, doc)["document_id"]
    replay_id = f"urn:uuid:{uuid.uuid4()}"
    deprecated = _change(world, doc, "superseded", submission_id=replay_id)
    assert deprecated.status_code == 200, deprecated.text
    newer = _provided(world, Doc(pdf_bytes("Compte rendu v2"), ins=doc.ins, rpps=DR), Reference(reference=f"DocumentReference/{first}"))
    again = _change(world, doc, "superseded", submission_id=replay_id)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
    assert _entry_locations(again) == _entry_locations(deprecated)  # the version changed then, not the newer one
    patient_id = patient_of(world, doc.ins)
    assert _found(_search(world, doc.ins, patient_id)) == [(newer["document_id"], "current")]


def test_a_status_change_recorded_before_its_changed_versions_were_is_answered_with_its_targets_latest_version(world: World) -> None:
    doc = Doc(pdf_bytes("Compte rendu"), ins=new_ins(), rpps=DR)
    _provided(world, doc)
    replay_id = f"urn:uuid:{uuid.uuid4()}"
    deprecated = _change(world, doc, "superseded", submission_id=replay_id)
    assert deprecated.status_code == 200, deprecated.text
    with world.rt.sessions() as session:  # as a row written before migration 0017 recorded the changed versions
        session.execute(update(SubmissionSet).where(SubmissionSet.unique_id == replay_id).values(changes=None))
        session.commit()
    again = _change(world, doc, "superseded", submission_id=replay_id)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
    assert _entry_locations(again) == _entry_locations(deprecated)


def test_changing_the_status_of_another_sources_document_is_refused_as_a_missing_one(world: World) -> None:
    doc = Doc(pdf_bytes("Compte rendu"), ins=new_ins(), rpps=DR)
    _provided(world, doc)
    nobody = Doc(pdf_bytes("Compte rendu"), ins=doc.ins, rpps=DR)
    for status in ("entered-in-error", "superseded"):
        theirs = _change(world, doc, status, source=OTHER)
        missing = _change(world, nobody, status, source=OTHER)
        assert theirs.status_code == missing.status_code == 422
        code = OperationOutcome.model_validate_json(theirs.content).issue[0].details.coding[0].code
        assert code == "replaced_document_not_found"
        assert theirs.json() == missing.json()
    patient_id = patient_of(world, doc.ins)
    assert _search(world, doc.ins, patient_id).total == 1
