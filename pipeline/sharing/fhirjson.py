"""FHIR resources to JSON, fast: the model library's own JSON (same elements, order and values), written without
its per-element Python serializer.

fhir.resources serializes through a wrap `model_serializer` that walks every element of every nested model in
Python and calls pydantic again per model: ~0.6 ms per DocumentReference, most of a search page's time. `dumps`
walks the same models once, in the library's element order (`elements_sequence`, aliases, primitive `_x`
extensions, comments), leaves empty elements out as `exclude_none` does, and lets pydantic-core write the JSON.
tests/sharing/test_fhirjson.py holds it byte-identical to `model_dump_json(exclude_none=True)`.
"""

from __future__ import annotations

import decimal
import uuid
from functools import cache
from typing import Any

import pydantic_core
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME, FHIRAbstractModel

# Primitive values the library turns into something else than pydantic-core would (base64, urn:uuid:, numbers).
CONVERTED = (bytes, bytearray, decimal.Decimal, uuid.UUID)


@cache
def _plan(cls: type[FHIRAbstractModel]) -> tuple[tuple[str, str, str | None, str | None], ...]:
    """Per element, in the library's order: (field name, JSON name, its extension field, that field's JSON name)."""
    fields, aliases = cls.model_fields, cls.get_alias_mapping()
    plan = []
    for element in cls.elements_sequence():
        name = aliases[element]
        ext = f"{name}__ext"
        ext_alias = (fields[ext].alias or ext) if ext in fields else None
        plan.append((name, fields[name].alias or name, ext if ext in fields else None, ext_alias))
    return tuple(plan)


def _plain(model: FHIRAbstractModel) -> dict[str, Any]:
    cls = type(model)
    values = model.__dict__
    out: dict[str, Any] = {"resourceType": cls.get_resource_type()} if cls.has_resource_base() else {}
    for name, alias, ext, ext_alias in _plan(cls):
        value = values.get(name)
        if value is not None and value != []:
            out[alias] = _value(model, name, value)
        if ext is not None and values.get(ext):
            out[ext_alias or ext] = _value(model, ext, values[ext])
    comments = values.get(FHIR_COMMENTS_FIELD_NAME)
    if comments is not None:
        out[FHIR_COMMENTS_FIELD_NAME] = comments
    return out


def _value(owner: FHIRAbstractModel, name: str, value: Any) -> Any:
    if isinstance(value, FHIRAbstractModel):
        return _plain(value)
    if isinstance(value, list):
        return [_value(owner, name, item) for item in value]
    if isinstance(value, CONVERTED):
        return owner._serialize_primitive_value(value, type(owner).model_fields[name])
    return value


def dumps(resource: FHIRAbstractModel) -> bytes:
    """The resource's JSON, as `resource.model_dump_json(exclude_none=True)` writes it."""
    return pydantic_core.to_json(_plain(resource))
