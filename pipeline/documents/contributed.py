"""Documents the patient adds to their own record (docs/domain.md: class 90, advance directives among them).

They go through the same intake, validation, encryption and index as any deposit; their source is
`patient:<record id>` and their class is always 90, of the type the patient declared: a patient's upload
never passes for a professional's report, whatever code its content carries.
"""

from __future__ import annotations

from pipeline.documents.classify import Classification

PATIENT_SOURCE = "patient"
PATIENT_CLASS = "90"
# DOCPAT01…06: the patient's own documents; EXPPAT_3: advance directives.
PATIENT_TYPES = (*(f"DOCPAT0{n}" for n in range(1, 7)), "EXPPAT_3")
ADVANCE_DIRECTIVES = "EXPPAT_3"


def patient_source(patient_id: str) -> str:
    """The source a patient's own deposits are recorded under."""
    return f"{PATIENT_SOURCE}:{patient_id}"


def is_patient_source(source: str) -> bool:
    return source.partition(":")[0] == PATIENT_SOURCE


def contributed_classification(source: str, declared_type: str | None) -> Classification | None:
    """A patient's document: class 90 and the type they declared (DOCPAT01 when it is none of theirs).
    None for any other source (classified as usual)."""
    if not is_patient_source(source):
        return None
    type_code = declared_type if declared_type in PATIENT_TYPES else PATIENT_TYPES[0]
    return Classification(PATIENT_CLASS, type_code, "patient_declared", 1.0)
