"""Each distinct element validated once: the same models the library makes, the same refusals, repeats shared."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from pipeline.sharing.provide import CONTAINED_MODELS, ENTRY_MODELS
from pipeline.sharing.validation import Elements
from tests.sharing.bundles import Doc, body, bundle, cda_bytes, pdf_bytes


def _entries() -> list[dict[str, Any]]:
    docs = [Doc(pdf_bytes()), Doc(cda_bytes("185057512345678"), content_type="application/xml", type_code="11502-2"), Doc(pdf_bytes("2"))]
    return list(json.loads(body(bundle(docs)))["entry"])


def _references(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["resource"] for e in entries if e["resource"]["resourceType"] == "DocumentReference"]


def test_every_resource_of_a_bundle_is_the_model_the_library_makes_of_it():
    elements = Elements(CONTAINED_MODELS)
    for entry in _entries():
        resource = entry["resource"]
        model = ENTRY_MODELS[resource["resourceType"]]
        assert elements.resource(model, resource) == model.model_validate(resource)


def test_an_element_repeated_across_resources_is_validated_once_and_shared():
    elements = Elements(CONTAINED_MODELS)
    first, second, _ = (elements.resource(DocumentReference, r) for r in _references(_entries()))
    assert first.subject == second.subject and first.subject is second.subject
    assert first.contained[0] is second.contained[0]  # the same author, contained in both


def test_equal_elements_in_another_order_are_still_equal_models():
    elements = Elements(CONTAINED_MODELS)
    resource = _references(_entries())[0]
    reordered = {**resource, "subject": dict(reversed(list(resource["subject"].items())))}
    assert elements.resource(DocumentReference, reordered) == elements.resource(DocumentReference, resource)


def _refused_as_by_the_library(model: type[Any], value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(value)
    with pytest.raises(ValidationError):
        Elements(CONTAINED_MODELS).resource(model, value)


def test_an_element_the_library_refuses_is_refused_even_after_a_valid_twin():
    good, bad = _references(_entries())[:2]
    bad = {**bad, "subject": {**bad["subject"], "reference": 42, "unknown": "x"}}
    elements = Elements(CONTAINED_MODELS)
    elements.resource(DocumentReference, good)
    with pytest.raises(ValidationError):
        elements.resource(DocumentReference, bad)
    _refused_as_by_the_library(DocumentReference, bad)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: {**r, "author": [None]}, id="null-in-a-list-of-elements"),
        pytest.param(lambda r: {**r, "subject": "Patient/1"}, id="string-for-an-element"),
        pytest.param(lambda r: {**r, "contained": [{"resourceType": "Practitioner", "active": "maybe"}]}, id="bad-contained"),
        pytest.param(lambda r: {**r, "content": [{**r["content"][0], "attachment": {"size": "big"}}]}, id="bad-nested-primitive"),
    ],
)
def test_what_the_library_refuses_is_refused(change):
    _refused_as_by_the_library(DocumentReference, change(_references(_entries())[0]))


def test_the_bundle_shell_is_the_library_s_bundle():
    raw = json.loads(body(bundle([Doc(pdf_bytes())])))
    shell = {**raw, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in raw["entry"]]}
    assert Elements().resource(Bundle, shell) == Bundle.model_validate(shell)
