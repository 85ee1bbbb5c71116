"""FHIR resources validated by the model library (fhir.resources), each distinct element of a Bundle once.

The library validates a resource element by element: every nested complex element (a Reference, a
CodeableConcept, a contained Practitioner...) goes through its own model and three Python validators, about
35 µs each, some twenty per DocumentReference. A Bundle repeats many of them word for word: the patient's
subject on every DocumentReference, the author, the type and category codes, the entries' requests.

`Elements` validates a resource's nested elements first, each by its own model, and the resource then with
those models in place (the library takes a model instance as it is, already valid, without validating it
again). A nested element equal to one already validated (the same model, the same JSON) is the model
validated then: validation depends on nothing but the model and the value, so the result is the one the
library would have given. What is not a JSON object (a string where an element is expected, a null in a
list) is left in place for the library to refuse as it would. A resource is refused exactly when the library
refuses it; the error may name the element's own location instead of the resource's path.

One `Elements` per Bundle: what it keeps lives as long as the request.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase

Model = type[FHIRAbstractModel]


def _element_model(annotation: Any) -> Model | None:
    """The model of a field holding a complex element (or a list of them); None for a primitive, or for a field
    that holds any resource (`contained`, `Bundle.entry.resource`: its model depends on the value)."""
    for candidate in (annotation, *typing.get_args(annotation)):
        for kind in (candidate, *typing.get_args(candidate)):
            if isinstance(kind, type) and issubclass(kind, FhirBase) and not issubclass(kind, FhirElementOrResourceBase):
                return kind.get_model_klass()
    return None


@cache
def _fields(model: Model) -> dict[str, Model | None]:
    """Per JSON name of the model's fields: the model of the element it holds (None: primitive or any resource)."""
    return {(info.alias or name): _element_model(info.annotation) for name, info in model.model_fields.items()}


class Elements:
    """A Bundle's elements as validated so far, by model and JSON (see the module's docstring)."""

    def __init__(self, contained: dict[str, Model] | None = None) -> None:
        self._seen: dict[tuple[Model, str], FHIRAbstractModel] = {}
        self._contained = contained or {}

    def resource(self, model: Model, value: dict[str, Any]) -> Any:
        """`value` validated by `model` (raises pydantic's ValidationError as `model.model_validate` does)."""
        return model.model_validate(self._children(model, value))

    def _element(self, model: Model, value: dict[str, Any]) -> FHIRAbstractModel:
        key = (model, repr(value))
        known = self._seen.get(key)
        if known is None:
            known = self._seen[key] = model.model_validate(self._children(model, value))
        return known

    def _child(self, model: Model | None, value: Any) -> Any:
        if model is not None and type(value) is dict:
            return self._element(model, value)
        if model is None and type(value) is dict:  # any resource: a contained one of a known kind by its own model
            named = value.get("resourceType")
            kind = self._contained.get(named) if isinstance(named, str) else None
            return self._element(kind, value) if kind is not None else value
        return value

    def _children(self, model: Model, value: dict[str, Any]) -> dict[str, Any]:
        fields = _fields(model)
        out: dict[str, Any] = {}
        for name, item in value.items():
            element = fields.get(name)
            if name not in fields or (element is None and name != "contained"):
                out[name] = item  # unknown (the library refuses it) or primitive
            elif type(item) is list:
                out[name] = [self._child(element, part) for part in item]
            else:
                out[name] = self._child(element, item)
        return out
