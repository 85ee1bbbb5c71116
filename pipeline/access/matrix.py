"""The access matrix (`data/access_matrix.csv`): which profession reads which class and type of document.

Rows `profession, specialty, class_code, type_code, effect, note`. For a (profession, specialty, class,
type) the most specific matching row wins (a type row over a class row, a specialty row over a
profession-wide row); no matching row means deny. Professions not listed in the table read nothing.
The table is read and validated once; a bad row stops the load with its file and line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

MATRIX_PATH = Path(__file__).resolve().parent / "data" / "access_matrix.csv"

PROFESSIONS = frozenset(
    {"physician", "pharmacist", "nurse", "physiotherapist", "dentist", "midwife", "podiatrist", "lab_biologist", "radiographer"}
)
# Matrix rows may also name these two actor kinds: what they read once `decide` lets them in at all.
MATRIX_SUBJECTS = PROFESSIONS | {"occupational_physician", "emergency_regulator"}

CLASSES = frozenset({"10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95"})
# Types docs/domain.md names that document_types.csv does not list (or lists under another class).
EXTRA_TYPES = frozenset({("31", "18748-4"), ("60", "REMB"), ("95", "unknown")} | {("90", f"DOCPAT0{n}") for n in range(1, 7)})
CARE_HISTORY = ("60", "REMB")  # the care history is reimbursement data: the matrix's class 60 decides for professionals


_HEADER = ["profession", "specialty", "class_code", "type_code", "effect", "note"]
_SPECIALTY = re.compile(r"^[a-z][a-z0-9_]*$")
_Key = tuple[str, str, str, str]  # profession, specialty ("" = any), class, type ("" = any)


@dataclass(frozen=True)
class AccessMatrix:
    rules: Mapping[_Key, bool]

    @property
    def subjects(self) -> frozenset[str]:
        return frozenset(key[0] for key in self.rules)

    def allows(self, profession: str | None, specialty: str | None, class_code: str, type_code: str) -> bool:
        """The most specific matching row decides (type over class, then specialty over any); no row: deny."""
        if not profession:
            return False
        for spec, typ in ((specialty or "", type_code), ("", type_code), (specialty or "", ""), ("", "")):
            effect = self.rules.get((profession, spec, class_code, typ))
            if effect is not None:
                return effect
        return False


def _known_types() -> frozenset[tuple[str, str]]:
    table = resources.files("pipeline.documents") / "data" / "document_types.csv"
    rows = csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"), newline=""))
    return frozenset((row["class_code"], row["type_code"]) for row in rows) | EXTRA_TYPES


def load_matrix(path: Path | str = MATRIX_PATH) -> AccessMatrix:
    """Read and validate the matrix; any bad row raises ValueError naming the file and line."""
    known_types = _known_types()
    rules: dict[_Key, bool] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != _HEADER:
            raise ValueError(f"{path}:1: header must be {','.join(_HEADER)}, got {header}")
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(_HEADER):
                raise ValueError(f"{path}:{line}: expected {len(_HEADER)} columns, got {len(row)}")
            profession, specialty, class_code, type_code, effect, _note = (cell.strip() for cell in row)
            if profession not in MATRIX_SUBJECTS:
                raise ValueError(f"{path}:{line}: unknown profession {profession!r}")
            if specialty and not _SPECIALTY.match(specialty):
                raise ValueError(f"{path}:{line}: specialty must be snake_case, got {specialty!r}")
            if class_code not in CLASSES:
                raise ValueError(f"{path}:{line}: unknown class {class_code!r}")
            if type_code and (class_code, type_code) not in known_types:
                raise ValueError(f"{path}:{line}: unknown type {type_code!r} for class {class_code}")
            if effect not in ("allow", "deny"):
                raise ValueError(f"{path}:{line}: effect must be allow or deny, got {effect!r}")
            key = (profession, specialty, class_code, type_code)
            if key in rules:
                raise ValueError(f"{path}:{line}: duplicate row for {key}")
            rules[key] = effect == "allow"
    return AccessMatrix(MappingProxyType(rules))


@lru_cache(maxsize=1)
def default_matrix() -> AccessMatrix:
    return load_matrix(MATRIX_PATH)
