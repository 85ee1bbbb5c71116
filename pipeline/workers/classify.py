"""Classification: class and type from the document's own code, then the manifest, then the title.

The vocabulary is data (`pipeline/data/document_types.csv`) that a domain expert can read and edit.
"""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "data" / "document_types.csv"
UNKNOWN_CLASS, UNKNOWN_TYPE = "95", "unknown"


@dataclass(frozen=True)
class Classification:
    class_code: str
    type_code: str
    rule: str  # which rule decided: cda_code | manifest_code | manifest_name | title | unclassified
    confidence: float

    @property
    def needs_review(self) -> bool:
        return self.type_code == UNKNOWN_TYPE


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).replace("’", "'").split())


@dataclass(frozen=True)
class _Vocabulary:
    by_code: dict[str, str]  # type code -> class code
    by_name: dict[str, str]  # folded name -> type code


@lru_cache(maxsize=1)
def vocabulary() -> _Vocabulary:
    by_code: dict[str, str] = {}
    by_name: dict[str, str] = {}
    with TABLE.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            by_code[row["type_code"]] = row["class_code"]
            names = [row["label_en"], row["label_fr"], *row["aliases"].split("|")]
            for name in filter(None, names):
                by_name.setdefault(_fold(name), row["type_code"])
    return _Vocabulary(by_code, by_name)


def classify(cda_code: str | None, document_type: str | None, title: str | None) -> Classification:
    """Decide class and type. Never fails: the unclassifiable is 95 / unknown, flagged for review."""
    vocab = vocabulary()
    if cda_code and cda_code in vocab.by_code:
        return Classification(vocab.by_code[cda_code], cda_code, "cda_code", 1.0)
    declared = (document_type or "").strip()
    if declared in vocab.by_code:
        return Classification(vocab.by_code[declared], declared, "manifest_code", 0.95)
    if declared and (code := vocab.by_name.get(_fold(declared))):
        return Classification(vocab.by_code[code], code, "manifest_name", 0.9)
    folded_title = _fold(title or "")
    if folded_title:
        # Longest name first, so "compte rendu de biologie" beats "biologie".
        for name in sorted(vocab.by_name, key=len, reverse=True):
            if name in folded_title:
                code = vocab.by_name[name]
                return Classification(vocab.by_code[code], code, "title", 0.6)
    return Classification(UNKNOWN_CLASS, UNKNOWN_TYPE, "unclassified", 0.0)
