"""What the samples name: the document types with their LOINC and class codes, the common names
senders use instead of a code, the reference date and the neutral title."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

REFERENCE_DATE = date(2026, 1, 15)
"""Every service date lies in the three years up to this day (inclusive), never after it."""

LOINC_OID = "2.16.840.1.113883.6.1"
UNKNOWN_CLASS = "95"
UNKNOWN_TYPE = "unknown"

NEUTRAL_TITLE = "Courrier"
"""The manifest title of documents whose title says nothing of their type."""


@dataclass(frozen=True)
class DocType:
    """A document type the generator writes, with its expected class code."""

    code: str
    class_code: str
    title: str
    display_name: str
    profession: str
    weight: int


DOC_TYPES: dict[str, DocType] = {
    t.code: t
    for t in (
        DocType("11490-0", "10", "Lettre de liaison de sortie", "Lettre de liaison", "physician", 25),
        DocType("11502-2", "10", "Compte rendu de biologie", "CR d'examens biologiques", "lab_biologist", 30),
        DocType("18748-4", "10", "Compte rendu d'imagerie", "CR d'imagerie médicale", "physician", 15),
        DocType("57833-6", "42", "Ordonnance de médicaments", "Prescription de médicaments", "physician", 14),
        DocType("34874-8", "10", "Compte rendu opératoire", "CR opératoire", "physician", 6),
        DocType("15507-7", "10", "Compte rendu de passage aux urgences", "CR de passage aux urgences", "physician", 10),
    )
}

# Common names some senders put in document_type instead of a code, and the code they mean.
COMMON_TYPE_NAMES: dict[str, str] = {
    "lettre de liaison": "11490-0",
    "discharge summary": "11490-0",
    "compte rendu de biologie": "11502-2",
    "Lab report": "11502-2",
    "Radiology report": "18748-4",
    "prescription": "57833-6",
    "Ordonnance": "57833-6",
    "Compte-rendu opératoire": "34874-8",
    "Emergency department report": "15507-7",
}
