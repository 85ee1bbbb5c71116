"""The DocumentReferences a search emits, built without validation (`model_construct`), validate against the
FHIR R4 models and read back as built."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference

from pipeline.index.models import Document, DocumentSharing
from pipeline.sharing.fhirjson import dumps
from pipeline.sharing.resources import document_reference, searchset

BASE = "https://dmp.example/fhir"
INS = "185057512345678"


def _document(**changes: object) -> Document:
    values = {"id": str(uuid.uuid4()), "patient_id": "p", "source": "hospital:X", "source_document_id": "urn:oid:1.2.3^4",
              "type_code": "11488-4", "class_code": "10", "mime_type": "application/pdf", "size": 1234,
              "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, 6789, dt.UTC), "service_date": dt.date(2025, 12, 31),
              "author_id": "10001234567", "author_profession": "physician", "status": "current", "version": 1, "supersedes_id": None,
              **changes}  # fmt: skip
    return Document(**values)


def _sharing(document_id: str) -> DocumentSharing:
    return DocumentSharing(document_id=document_id, unique_id="urn:oid:1.2.250.1.999.2.7", confidentiality="R",
                           practice_setting="ETABLISSEMENT", facility_type="SA01", format_code=None, language="fr-FR",
                           event_codes="GLYC HBA1C", author_given="Paul", author_family="Martin", author_facility="CHU")  # fmt: skip


CASES = {
    "every sharing field and a replaced version": lambda: (d := _document(version=2, status="superseded",
                                                                           supersedes_id=str(uuid.uuid4())), _sharing(d.id)),
    "no sharing metadata, no author, no service date": lambda: (_document(author_id=None, service_date=None, class_code=None), None),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_built_document_reference_validates_and_reads_back_as_built(case: str) -> None:
    document, sharing = CASES[case]()
    resource = document_reference(BASE, document, sharing, INS, "Compte rendu")
    written = dumps(resource)
    assert dumps(DocumentReference.model_validate_json(written)) == written


def test_a_built_searchset_validates_with_its_document_references() -> None:
    document = _document()
    page = searchset(BASE, [document_reference(BASE, document, _sharing(document.id), INS, None)], 1, f"{BASE}/x", None)
    found = Bundle.model_validate_json(dumps(page))
    assert (found.total, found.entry[0].resource.id, found.entry[0].resource.relatesTo) == (1, document.id, None)


def test_a_replacement_relates_to_the_version_it_replaced() -> None:
    previous = str(uuid.uuid4())
    resource = DocumentReference.model_validate_json(dumps(document_reference(BASE, _document(supersedes_id=previous), None, INS, None)))
    assert [(r.code, r.target.reference) for r in resource.relatesTo] == [("replaces", f"DocumentReference/{previous}")]


def test_built_makes_what_model_construct_makes() -> None:
    from fhir.resources.R4B.reference import Reference

    from pipeline.sharing.resources import built

    mine, theirs = built(Reference, reference="#author", display="x"), Reference.model_construct(reference="#author", display="x")
    assert (dict(mine), mine.model_fields_set, dumps(mine)) == (dict(theirs), theirs.model_fields_set, dumps(theirs))
