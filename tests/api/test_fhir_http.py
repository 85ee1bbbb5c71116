"""FHIR MHD over HTTP, embedded mode: ITI-65 in, found by each ITI-67 search parameter, ITI-68 byte-identical,
ITI-66 lists, refusals as OperationOutcomes with their codes; every resource the server emits parses with
the model library (fhir.resources, R4 models)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy import func, select

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings
from pipeline.index.models import BatchItem, Document, Patient
from pipeline.runtime import Runtime
from pipeline.sources import add_source
from tests.sharing.bundles import INS_SYSTEM, NIR, Doc, body, bundle, cda_bytes, pdf_bytes

pytestmark = pytest.mark.slow  # documents through the API and the in-process workers

LIMIT = 2 * 1024 * 1024
FHIR = {"Content-Type": "application/fhir+json"}
PDF_RPPS, CDA_RPPS = "10000000001", "10000000002"


def _wait_indexed(rt: Runtime, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            waiting = session.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state.in_(("queued", "processing"))))
        if not waiting:
            return
        time.sleep(0.2)
    raise TimeoutError("items still waiting")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An API with a hospital and an insurer holding keys, and one provided Bundle (a PDF and a CDA) indexed."""
    settings = Settings(home=tmp_path_factory.mktemp("fhir") / "home", upload_max_request_bytes=LIMIT)
    rt = Runtime.from_settings(settings, prepare=True)
    with rt.sessions() as session:
        keys = {
            s: {"Authorization": f"Bearer {add_source(session, rt.hmac_secret, s)}"} for s in ("hospital:CHU-FHIR", "insurer:CNAM-FHIR")
        }
    pdf, cda = pdf_bytes("Ordonnance de sortie"), cda_bytes(NIR)
    docs = [
        Doc(pdf, type_code="57833-6", category="42", rpps=PDF_RPPS, title="Ordonnance de sortie"),
        # The DocumentReference says consultation report; the CDA's own code (lab results) wins.
        Doc(cda, content_type="application/xml", type_code="11488-4", rpps=CDA_RPPS, service_date="2025-05-01",
            facility_type="SA01", practice_setting="ETABLISSEMENT", events=("CONSULT",), confidentiality="N"),
    ]  # fmt: skip
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/fhir", content=body(bundle(docs, "urn:oid:1.2.250.1.999.9.1")), headers={**keys["hospital:CHU-FHIR"], **FHIR}
        )
        assert answer.status_code == 200, answer.text
        _wait_indexed(rt)
        with rt.sessions() as session:
            patient_id = session.scalars(select(Patient.id).where(Patient.ins == NIR)).one()
        patient = {"Authorization": f"Bearer {mint_token(settings, patient_id, 'patient')}"}
        yield {"client": client, "rt": rt, "keys": keys, "patient": patient, "answer": answer, "pdf": pdf, "cda": cda, "settings": settings}
    rt.close()


def _search(world, path: str, **params: str) -> Bundle:
    answer = world["client"].get(path, params={"patient.identifier": f"{INS_SYSTEM}|{NIR}", **params}, headers=world["patient"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    return Bundle.model_validate_json(answer.content)


def _types(found: Bundle) -> list[str]:
    return sorted(entry.resource.type.coding[0].code for entry in found.entry or [])


def _outcome_code(answer) -> str:
    outcome = OperationOutcome.model_validate_json(answer.content)
    return outcome.issue[0].details.coding[0].code


def test_the_capability_statement_states_the_mhd_transactions(world):
    answer = world["client"].get("/fhir/metadata")
    statement = CapabilityStatement.model_validate_json(answer.content)
    kinds = {resource.type: resource for resource in statement.rest[0].resource}
    assert set(kinds) == {"DocumentReference", "List", "Binary", "AuditEvent"}
    wanted = {"patient.identifier", "status", "category", "type", "date", "period", "author.identifier", "facility", "setting", "event"}
    assert {p.name for p in kinds["DocumentReference"].searchParam} >= wanted
    assert {i.code for i in kinds["DocumentReference"].interaction} == {"read", "search-type"}
    assert {i.code for i in kinds["List"].interaction} == {"read", "search-type"}


def test_the_transaction_response_names_what_was_created_in_bundle_order(world):
    answer = Bundle.model_validate_json(world["answer"].content)
    assert answer.type == "transaction-response"
    locations = [entry.response.location.split("/")[0] for entry in answer.entry]
    assert locations == ["List", "DocumentReference", "Binary", "DocumentReference", "Binary"]
    assert all(entry.response.status == "201 Created" for entry in answer.entry)


def test_the_answer_points_at_the_batch_status_where_each_document_reads_indexed(world):
    status = world["client"].get(world["answer"].headers["location"], headers=world["keys"]["hospital:CHU-FHIR"]).json()
    assert [(item["state"], item["type_code"]) for item in status["items"]] == [("indexed", "57833-6"), ("indexed", "11502-2")]


def test_the_provided_documents_are_found_by_the_patient_identifier(world):
    assert _types(_search(world, "/fhir/DocumentReference")) == ["11502-2", "57833-6"]


def test_the_cda_own_code_wins_over_the_declared_type(world):
    found = _search(world, "/fhir/DocumentReference", type="http://loinc.org|11502-2")
    assert _types(found) == ["11502-2"]
    assert _types(_search(world, "/fhir/DocumentReference", type="11488-4")) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "current"}, ["11502-2", "57833-6"]),
        ({"status": "superseded"}, []),
        ({"category": "42"}, ["57833-6"]),
        ({"category": "10"}, ["11502-2"]),
        ({"date": f"ge{dt.date.today() - dt.timedelta(days=1)}"}, ["11502-2", "57833-6"]),
        ({"date": "lt2000-01-01"}, []),
        ({"period": "2025-06-01"}, ["57833-6"]),
        ({"period": "le2025-05-15"}, ["11502-2"]),
        ({"author.identifier": f"urn:oid:1.2.250.1.71.4.2.1|{PDF_RPPS}"}, ["57833-6"]),
        ({"author.family": "Biologiste"}, ["11502-2"]),
        ({"facility": "SA29"}, ["11502-2"]),  # the CDA header's, over the declared SA01
        ({"facility": "SA01"}, ["57833-6"]),
        ({"setting": "BIOLOGIE"}, ["11502-2"]),
        ({"event": "HBA1C"}, ["11502-2"]),
        ({"event": "CONSULT"}, ["57833-6"]),
        ({"security-label": "R"}, ["11502-2"]),
    ],
)
def test_each_search_parameter_finds_its_documents(world, params, expected):
    assert _types(_search(world, "/fhir/DocumentReference", **params)) == expected


def test_paging_gives_every_document_once_and_the_total_of_all(world):
    first = _search(world, "/fhir/DocumentReference", _count="1")
    assert (first.total, len(first.entry)) == (2, 1)
    following = next(link.url for link in first.link if link.relation == "next")
    second = Bundle.model_validate_json(world["client"].get(following, headers=world["patient"]).content)
    assert second.total == 2 and len(second.entry) == 1
    assert not any(link.relation == "next" for link in second.link)
    assert {first.entry[0].resource.id, second.entry[0].resource.id} == {
        d.resource.id for d in _search(world, "/fhir/DocumentReference").entry
    }


def test_each_document_is_retrieved_byte_identical_at_its_attachment_url(world):
    found = _search(world, "/fhir/DocumentReference")
    retrieved = {}
    for entry in found.entry:
        attachment = entry.resource.content[0].attachment
        answer = world["client"].get(str(attachment.url), headers=world["patient"])
        assert answer.status_code == 200
        retrieved[attachment.contentType] = answer.content
    assert retrieved == {"application/pdf": world["pdf"], "application/xml": world["cda"]}


def test_each_document_reference_is_read_by_its_id_as_the_search_shows_it(world):
    found = _search(world, "/fhir/DocumentReference")
    for entry in found.entry:
        answer = world["client"].get(f"/fhir/DocumentReference/{entry.resource.id}", headers=world["patient"])
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+json")
        assert DocumentReference.model_validate_json(answer.content) == entry.resource


def test_a_document_reference_read_refused_is_the_unknown_id_s_404(world):
    found = _search(world, "/fhir/DocumentReference")
    stranger = _professional(world, "10009999999")
    refused = world["client"].get(f"/fhir/DocumentReference/{found.entry[0].resource.id}", headers=stranger)
    unknown = world["client"].get("/fhir/DocumentReference/00000000-0000-4000-8000-000000000000", headers=stranger)
    assert (refused.status_code, refused.content) == (unknown.status_code, unknown.content)
    assert refused.status_code == 404 and _outcome_code(refused) == "not_found"


def test_the_submission_set_is_found_as_a_list_of_its_documents(world):
    lists = _search(world, "/fhir/List", code="submissionset")
    (found,) = [entry.resource for entry in lists.entry]
    assert found.identifier[0].value == "urn:oid:1.2.250.1.999.9.1"
    documents = {entry.resource.id for entry in _search(world, "/fhir/DocumentReference").entry}
    assert {item.item.reference.removeprefix("DocumentReference/") for item in found.entry} == documents


def test_the_list_the_transaction_answered_is_read_at_its_location_as_the_search_shows_it(world):
    location = Bundle.model_validate_json(world["answer"].content).entry[0].response.location
    answer = world["client"].get(f"/fhir/{location}", headers=world["patient"])
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+json")
    (searched,) = [entry.resource for entry in _search(world, "/fhir/List").entry]
    assert FhirList.model_validate_json(answer.content) == searched


def test_a_list_read_by_a_stranger_is_the_same_404_as_an_unknown_list(world):
    location = Bundle.model_validate_json(world["answer"].content).entry[0].response.location
    stranger = _professional(world, "10009999998")
    refused = world["client"].get(f"/fhir/{location}", headers=stranger)
    unknown = world["client"].get("/fhir/List/00000000-0000-4000-8000-000000000000", headers=stranger)
    assert (refused.status_code, refused.content) == (unknown.status_code, unknown.content)
    assert refused.status_code == 404 and _outcome_code(refused) == "not_found"


XML = {"Accept": "application/fhir+xml"}


def _search_answer(world, path: str, headers: dict[str, str] | None = None, **params: str):
    query = {"patient.identifier": f"{INS_SYSTEM}|{NIR}", **params}
    return world["client"].get(path, params=query, headers={**world["patient"], **(headers or {})})


@pytest.mark.parametrize("asked", [{"params": {"_format": "xml"}}, {"params": {"_format": "application/fhir+xml"}}, {"headers": XML}])
def test_a_search_asked_in_xml_answers_the_same_bundle_in_fhir_xml(world, asked):
    answer = _search_answer(world, "/fhir/DocumentReference", asked.get("headers"), **asked.get("params", {}))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+xml")
    in_json = _search(world, "/fhir/DocumentReference")
    in_xml = Bundle.model_validate_xml(answer.content)
    assert in_xml.total == in_json.total and in_xml.entry == in_json.entry  # its links keep the _format asked


def test_an_unencoded_plus_in_format_still_names_fhir_xml(world):
    answer = world["client"].get("/fhir/metadata?_format=application/fhir+xml")
    assert answer.headers["content-type"].startswith("application/fhir+xml")
    assert CapabilityStatement.model_validate_xml(answer.content).format == ["application/fhir+json", "application/fhir+xml"]


def test_an_unknown_format_is_refused_not_acceptable(world):
    answer = _search_answer(world, "/fhir/DocumentReference", _format="yaml")
    assert (answer.status_code, _outcome_code(answer)) == (406, "unsupported_format")


def test_a_refusal_asked_in_xml_is_an_operation_outcome_in_xml(world):
    answer = world["client"].get("/fhir/List/00000000-0000-4000-8000-000000000000", headers={**world["patient"], **XML})
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("application/fhir+xml")
    assert OperationOutcome.model_validate_xml(answer.content).issue[0].details.coding[0].code == "not_found"


def test_a_bundle_sent_in_xml_is_taken_in_and_answered_in_xml(world):
    client, rt, key = world["client"], world["rt"], world["keys"]["hospital:CHU-FHIR"]
    sent = bundle([Doc(pdf_bytes("Compte rendu en XML"), type_code="11488-4")], "urn:oid:1.2.250.1.999.9.77").model_dump_xml()
    answer = client.post("/fhir", content=sent, headers={**key, "Content-Type": "application/fhir+xml"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+xml")
    created = Bundle.model_validate_xml(answer.content)
    assert [entry.response.status for entry in created.entry] == ["201 Created"] * 3
    _wait_indexed(rt)
    status = client.get(answer.headers["location"], headers=key).json()
    assert [item["state"] for item in status["items"]] == ["indexed"]


@pytest.mark.parametrize(
    "hostile",
    [
        b'<?xml version="1.0"?><!DOCTYPE Bundle [<!ENTITY x SYSTEM "file:///etc/passwd">]><Bundle xmlns="http://hl7.org/fhir">&x;</Bundle>',
        b'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Bundle>&b;</Bundle>',
        b"<Bundle xmlns='http://hl7.org/fhir'><type value='transaction'/>",
        b"<Patient xmlns='http://hl7.org/fhir'><id value='x'/></Patient>",
    ],
    ids=["external-entity", "entity-expansion", "not-well-formed", "not-a-bundle"],
)
def test_a_hostile_or_broken_xml_bundle_is_refused_bundle_invalid_and_records_nothing(world, hostile):
    client, rt, key = world["client"], world["rt"], world["keys"]["hospital:CHU-FHIR"]
    with rt.sessions() as session:
        before = session.scalar(select(func.count()).select_from(BatchItem))
    answer = client.post("/fhir", content=hostile, headers={**key, "Content-Type": "application/fhir+xml"})
    assert (answer.status_code, OperationOutcome.model_validate_xml(answer.content).issue[0].details.coding[0].code) == (
        422,
        "bundle_invalid",
    )
    assert b"root:" not in answer.content
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(BatchItem)) == before


def test_a_replayed_submission_is_answered_the_same_and_adds_no_document(world):
    client, rt, key = world["client"], world["rt"], world["keys"]["hospital:CHU-FHIR"]
    with rt.sessions() as session:
        before = session.scalar(select(func.count()).select_from(Document))
    again = bundle([Doc(pdf_bytes("autre contenu"))], "urn:oid:1.2.250.1.999.9.1")  # same SubmissionSet id
    answer = client.post("/fhir", content=body(again), headers={**key, **FHIR})
    assert answer.status_code == 200 and answer.headers["idempotent-replayed"] == "true"
    assert (
        Bundle.model_validate_json(answer.content).entry[0].response.location
        == Bundle.model_validate_json(world["answer"].content).entry[0].response.location
    )
    _wait_indexed(rt)
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == before


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (Doc(b"%PDF-1.4 x", size=3), "size_mismatch"),
        (Doc(b"%PDF-1.4 x", sha1=b"\1" * 20), "hash_mismatch"),
        (Doc(b"%PDF-1.4 x", binary=False), "binary_missing"),
        (Doc(b"%PDF-1.4 x", type_code="00000-0"), "unknown_code"),
        (Doc(b"%PDF-1.4 x", ins=NIR[:13] + "00"), "invalid_ins"),
    ],
)
def test_a_refused_bundle_is_an_operation_outcome_with_its_code_and_records_nothing(world, doc, code):
    client, rt, key = world["client"], world["rt"], world["keys"]["hospital:CHU-FHIR"]
    with rt.sessions() as session:
        before = session.scalar(select(func.count()).select_from(BatchItem))
    answer = client.post("/fhir", content=body(bundle([doc], ins=doc.ins)), headers={**key, **FHIR})
    assert (answer.status_code, _outcome_code(answer)) == (422, code)
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(BatchItem)) == before


def test_a_source_that_may_not_send_documents_is_refused_source_not_allowed(world):
    answer = world["client"].post("/fhir", content=body(bundle([Doc(pdf_bytes())])), headers={**world["keys"]["insurer:CNAM-FHIR"], **FHIR})
    assert (answer.status_code, _outcome_code(answer)) == (403, "source_not_allowed")


def test_a_bundle_without_a_source_key_is_refused_invalid_credentials(world):
    answer = world["client"].post("/fhir", content=body(bundle([Doc(pdf_bytes())])), headers=FHIR)
    assert (answer.status_code, _outcome_code(answer)) == (401, "invalid_credentials")


def test_a_bundle_past_the_size_limit_is_refused_payload_too_large(world):
    big = bundle([Doc(b"%PDF-1.4 " + b"0" * LIMIT)])
    answer = world["client"].post("/fhir", content=body(big), headers={**world["keys"]["hospital:CHU-FHIR"], **FHIR})
    assert (answer.status_code, _outcome_code(answer)) == (413, "payload_too_large")


def test_a_search_by_an_identifier_that_is_not_an_ins_is_refused(world):
    answer = world["client"].get("/fhir/DocumentReference", params={"patient.identifier": "http://x|1"}, headers=world["patient"])
    assert (answer.status_code, _outcome_code(answer)) == (400, "patient_identifier_invalid")


def test_an_unsupported_search_parameter_is_refused(world):
    params = {"patient.identifier": f"{INS_SYSTEM}|{NIR}", "subject:Patient.name": "x"}
    answer = world["client"].get("/fhir/DocumentReference", params=params, headers=world["patient"])
    assert (answer.status_code, _outcome_code(answer)) == (400, "unsupported_search_parameter")


def test_the_patient_reads_the_access_log_as_balp_audit_events(world):
    events = _search(world, "/fhir/AuditEvent", _count="200")
    actions = {entry.resource.subtype[1].code for entry in events.entry}
    assert {"deposit", "list", "read_content"} <= actions


def _professional(world, rpps: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(world['settings'], rpps, 'professional', profession='physician', rpps=rpps)}"}


def test_a_break_glass_search_reads_back_to_the_attending_physician_as_a_btg_audit_event(world):
    client, attending, stranger = world["client"], "10000000777", "10000000888"
    with world["rt"].sessions() as session:
        patient_id = session.scalars(select(Patient.id).where(Patient.ins == NIR)).one()
    assert (
        client.put(f"/v1/patients/{patient_id}/attending-physician", json={"physician_id": attending}, headers=world["patient"]).status_code
        == 200
    )
    params = {"patient.identifier": f"{INS_SYSTEM}|{NIR}"}
    emergency = {**_professional(world, stranger), "X-Emergency-Reason": "patient inconscient"}
    assert client.get("/fhir/DocumentReference", params=params, headers=emergency).status_code == 200
    answer = client.get("/fhir/AuditEvent", params={**params, "_count": "200"}, headers=_professional(world, attending))
    assert answer.status_code == 200, answer.text
    events = [entry.resource for entry in Bundle.model_validate_json(answer.content).entry]
    (glass,) = [event for event in events if event.agent[0].who.identifier.value == stranger]
    assert [c.code for c in glass.purposeOfEvent[0].coding] == ["BTG"]
    assert glass.purposeOfEvent[0].text == "patient inconscient"
    assert glass.entity[0].what.identifier.value == NIR
    assert all(event.purposeOfEvent is None for event in events if event.agent[0].who.identifier.value != stranger)


def test_a_professional_who_is_not_the_attending_physician_reads_only_their_own_audit_events(world):
    params, other = {"patient.identifier": f"{INS_SYSTEM}|{NIR}"}, "10000000999"
    world["client"].get("/fhir/DocumentReference", params=params, headers=_professional(world, other))
    answer = world["client"].get("/fhir/AuditEvent", params=params, headers=_professional(world, other))
    events = [entry.resource for entry in Bundle.model_validate_json(answer.content).entry]
    assert events and {event.agent[0].who.identifier.value for event in events} == {other}


def test_a_document_past_the_whole_body_limit_is_streamed_byte_identical(world, monkeypatch):
    from api.routes import fhir as routes

    monkeypatch.setattr(routes, "WHOLE_BODY_LIMIT", 0)
    (entry,) = _search(world, "/fhir/DocumentReference", type="11502-2").entry
    answer = world["client"].get(str(entry.resource.content[0].attachment.url), headers=world["patient"])
    assert (answer.status_code, answer.content) == (200, world["cda"])
