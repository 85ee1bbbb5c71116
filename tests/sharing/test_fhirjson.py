"""`dumps` writes exactly the JSON the model library writes (`model_dump_json(exclude_none=True)`)."""

from __future__ import annotations

import base64
import json

import pytest
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

from pipeline.sharing.fhirjson import dumps
from pipeline.sharing.resources import capability_statement, outcome

RESOURCES = {
    "capability statement": lambda: capability_statement("https://dmp.example/fhir"),
    "operation outcome": lambda: outcome(422, "bundle_invalid", "Not a Bundle."),
    "binary (base64 bytes)": lambda: Binary(contentType="application/pdf", data=base64.b64encode(b"%PDF-1.7 bytes")),
    "primitive extension and comments": lambda: DocumentReference.model_validate(
        {"status": "current", "_status": {"extension": [{"url": "https://x.example/e", "valueString": "v"}]},
         "content": [{"attachment": {"url": "https://x.example/b", "size": 3}}], "fhir_comments": ["a comment"]}
    ),
    "decimal value": lambda: Observation.model_validate(
        {"status": "final", "code": {"text": "t"}, "valueQuantity": {"value": 12.50, "unit": "mmol/L"}}
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", RESOURCES)
def test_dumps_writes_what_the_model_library_writes(name: str) -> None:
    resource: Resource = RESOURCES[name]()
    assert dumps(resource) == resource.model_dump_json(exclude_none=True).encode()


def test_dumps_leaves_empty_lists_out() -> None:
    resource = DocumentReference.model_construct(status="current", content=[], author=[])
    assert json.loads(dumps(resource)) == {"resourceType": "DocumentReference", "status": "current"}
