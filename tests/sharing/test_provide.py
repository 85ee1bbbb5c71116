"""Reading an ITI-65 Bundle: what it makes of a good one, and each refusal with its code (nothing recorded)."""

from __future__ import annotations

import json

import pytest

from pipeline.sharing import provide
from pipeline.sharing.provide import SubmissionRefused, read_submission
from tests.sharing.bundles import NIR, Doc, body, bundle, cda_bytes, pdf_bytes


def _refusal(data: bytes) -> str:
    with pytest.raises(SubmissionRefused) as caught:
        read_submission(data)
    return caught.value.code


def test_a_bundle_with_a_pdf_and_a_cda_makes_two_manifest_rows_with_their_sharing_metadata():
    pdf, cda = pdf_bytes(), cda_bytes(NIR)
    submission = read_submission(body(bundle([Doc(pdf), Doc(cda, content_type="application/xml", type_code="11502-2")], "urn:oid:1.2.3")))
    assert submission.unique_id == "urn:oid:1.2.3"
    first, second = submission.documents
    assert (first.content, second.content) == (pdf, cda)
    assert first.row["file"].endswith(".pdf") and second.row["file"].endswith(".xml")
    assert first.row.items() >= {"patient_ins": NIR, "document_type": "11488-4", "service_date": "2025-06-01", "author_id": "10001234567",
                              "author_profession": "physician", "confidentiality": "N", "facility_type": "SA01",
                              "practice_setting": "ETABLISSEMENT", "event_codes": "CONSULT", "language": "fr-FR",
                              "author_family": "Martin", "author_given": "Paul", "author_facility": "CHU de Test"}.items()  # fmt: skip


def test_inline_attachment_data_needs_no_binary():
    submission = read_submission(body(bundle([Doc(pdf_bytes(), inline=True)])))
    assert submission.documents[0].binary_entry is None


@pytest.mark.parametrize("system", ["urn:oid:1.2.250.1.213.1.4.99", "http://example.org/patients"])
def test_a_patient_not_named_by_an_ins_oid_is_refused(system):
    assert _refusal(body(bundle([Doc(pdf_bytes())], patient_system=system))) == "patient_identifier_invalid"


def test_an_ins_with_a_wrong_key_is_invalid_ins():
    bad = NIR[:13] + "00"
    assert _refusal(body(bundle([Doc(pdf_bytes(), ins=bad)], ins=bad))) == "invalid_ins"


def test_a_size_that_does_not_match_the_bytes_is_size_mismatch():
    assert _refusal(body(bundle([Doc(pdf_bytes(), size=10)]))) == "size_mismatch"


def test_a_hash_that_does_not_match_the_bytes_is_hash_mismatch():
    assert _refusal(body(bundle([Doc(pdf_bytes(), sha1=b"\0" * 20)]))) == "hash_mismatch"


def test_an_attachment_pointing_at_no_binary_is_binary_missing():
    assert _refusal(body(bundle([Doc(pdf_bytes(), binary=False)]))) == "binary_missing"


@pytest.mark.parametrize(
    "override",
    [{"type_code": "99999-9"}, {"category": "77"}, {"confidentiality": "X"}, {"facility_type": "NOPE"}, {"practice_setting": "NOPE"},
     {"language": "xx-XX"}, {"profession": "astrologer"}, {"type_system": "http://snomed.info/sct"}],
)  # fmt: skip
def test_a_code_outside_its_value_set_is_unknown_code(override):
    assert _refusal(body(bundle([Doc(pdf_bytes(), **override)]))) == "unknown_code"


def test_more_documents_than_allowed_is_bundle_too_large(monkeypatch):
    monkeypatch.setattr(provide, "MAX_DOCUMENTS", 2)
    assert _refusal(body(bundle([Doc(b"%PDF-1.4 a"), Doc(b"%PDF-1.4 b"), Doc(b"%PDF-1.4 c")]))) == "bundle_too_large"


@pytest.mark.parametrize("data", [b"not json", b'{"resourceType": "Patient"}', b'{"resourceType": "Bundle", "type": "batch"}'])
def test_what_is_not_a_transaction_bundle_is_bundle_invalid(data):
    assert _refusal(data) == "bundle_invalid"


def test_a_bundle_without_a_submission_set_is_bundle_invalid():
    value = bundle([Doc(pdf_bytes())])
    value.entry = value.entry[1:]
    assert _refusal(body(value)) == "bundle_invalid"


def test_a_document_about_another_patient_than_the_submission_set_is_refused():
    from tests.sharing.bundles import OTHER_NIR

    assert _refusal(body(bundle([Doc(pdf_bytes(), ins=OTHER_NIR)]))) == "bundle_invalid"


def test_a_document_reference_that_replaces_another_asks_for_a_new_version_of_it():
    from fhir.resources.R4B.documentreference import DocumentReferenceRelatesTo
    from fhir.resources.R4B.reference import Reference

    from pipeline.sharing.provide import Replaced, read_submission

    value = bundle([Doc(pdf_bytes())])
    value.entry[1].resource.relatesTo = [DocumentReferenceRelatesTo(code="replaces", target=Reference(reference="DocumentReference/x"))]
    (document,) = read_submission(body(value)).documents
    assert (document.replaces, document.row["version_action"]) == (Replaced(document_id="x"), "replace")


def test_a_relation_other_than_replaces_is_refused_replacement_not_supported():
    from fhir.resources.R4B.documentreference import DocumentReferenceRelatesTo
    from fhir.resources.R4B.reference import Reference

    value = bundle([Doc(pdf_bytes())])
    value.entry[1].resource.relatesTo = [DocumentReferenceRelatesTo(code="appends", target=Reference(reference="DocumentReference/x"))]
    assert _refusal(body(value)) == "replacement_not_supported"


def test_a_document_reference_entered_in_error_is_a_withdrawal_of_the_document_it_names():
    doc = Doc(pdf_bytes())
    value = bundle([doc])
    value.entry[1].resource.status = "entered-in-error"
    submission = read_submission(body(value))
    assert (submission.documents, submission.changes) == ([], [provide.StatusChange(doc.unique_id, "withdraw", 1)])


def test_a_document_reference_superseded_without_successor_is_a_deprecation():
    doc = Doc(pdf_bytes())
    value = bundle([doc])
    value.entry[1].resource.status = "superseded"
    assert read_submission(body(value)).changes == [provide.StatusChange(doc.unique_id, "deprecate", 1)]


def test_a_status_change_naming_a_successor_is_refused_replacement_not_supported():
    from fhir.resources.R4B.documentreference import DocumentReferenceRelatesTo
    from fhir.resources.R4B.reference import Reference

    value = bundle([Doc(pdf_bytes())])
    value.entry[1].resource.status = "superseded"
    value.entry[1].resource.relatesTo = [DocumentReferenceRelatesTo(code="replaces", target=Reference(reference="DocumentReference/x"))]
    assert _refusal(body(value)) == "replacement_not_supported"


def test_json_nested_past_the_parser_depth_is_refused_bundle_invalid():
    nested = b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    assert _refusal(nested) == "bundle_invalid"


def test_an_entry_without_a_resource_is_refused_bundle_invalid():
    value = json.loads(body(bundle([Doc(pdf_bytes())])))
    del value["entry"][2]["resource"]
    assert _refusal(json.dumps(value).encode()) == "bundle_invalid"


def test_a_contained_resource_whose_type_is_not_a_string_is_refused_bundle_invalid():
    raw = json.loads(body(bundle([Doc(pdf_bytes())])))
    for entry in raw["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["contained"] = [{"resourceType": ["Practitioner"]}]
    assert _refusal(json.dumps(raw).encode()) == "bundle_invalid"
