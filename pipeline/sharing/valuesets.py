"""The value sets of the document-sharing metadata, one CSV table each in pipeline/sharing/data/.

A table has `code,system,display` columns (comment lines start with #). Codes are checked against them at
intake (an unknown code refuses the submission) and turned back into codings when resources are built.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"


class ValueSetName(StrEnum):
    CONFIDENTIALITY = "confidentiality"
    FACILITY_TYPES = "facility_types"
    PRACTICE_SETTINGS = "practice_settings"
    FORMATS = "formats"
    LANGUAGES = "languages"
    CLASSES = "classes"
    TYPE_SYSTEMS = "type_systems"
    PROFESSIONS = "professions"


@dataclass(frozen=True)
class Code:
    code: str
    system: str
    display: str


@cache
def value_set(name: ValueSetName) -> dict[str, Code]:
    """The codes of one table, by code."""
    path = DATA / f"{name}.csv"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip() and not line.startswith("#")]
    codes: dict[str, Code] = {}
    for row in csv.DictReader(io.StringIO("".join(lines), newline="")):
        code = Code(row["code"].strip(), row["system"].strip(), row["display"].strip())
        if code.code in codes:
            raise ValueError(f"{path.name}: code {code.code} listed twice")
        codes[code.code] = code
    return codes


def lookup(name: ValueSetName, code: str | None) -> Code | None:
    """The entry for `code` in the table, None when it is absent or not given."""
    return value_set(name).get(code) if code else None


def find(name: ValueSetName, system: str | None, code: str | None) -> Code | None:
    """The entry for a coding (`system` must match when given)."""
    entry = lookup(name, code)
    if entry is None or (system and system != entry.system):
        return None
    return entry


def type_system(type_code: str) -> str:
    """The FHIR system of one of our document type codes (pipeline/documents/data/document_types.csv)."""
    from pipeline.documents.classify import CODE_SYSTEM_OIDS, vocabulary

    oid = vocabulary().by_system.get(type_code, "")
    name = next((name for name, known in CODE_SYSTEM_OIDS.items() if known and known == oid), "local")
    entry = lookup(ValueSetName.TYPE_SYSTEMS, name)
    assert entry is not None, f"type_systems.csv lacks {name}"
    return entry.system


def is_type_coding(system: str | None, code: str | None) -> bool:
    """Whether a coding names one of our document types, in its own system (or with none given)."""
    from pipeline.documents.classify import vocabulary

    known = vocabulary()
    if not code or code not in known.by_code:
        return False
    oid = known.by_system.get(code, "")
    return system is None or system == type_system(code) or (bool(oid) and system == f"urn:oid:{oid}")
