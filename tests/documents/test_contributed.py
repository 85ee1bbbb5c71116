"""A patient's own deposit (pipeline/documents/contributed.py): class 90 of the declared type, whatever its content says."""

from __future__ import annotations

from pipeline.documents.contributed import contributed_classification, patient_source


def test_a_patients_document_is_class_90_of_the_declared_type() -> None:
    found = contributed_classification(patient_source("p-1"), "EXPPAT_3")
    assert found is not None and (found.class_code, found.type_code, found.needs_review) == ("90", "EXPPAT_3", False)


def test_a_patients_document_declared_as_a_professionals_report_is_still_theirs() -> None:
    found = contributed_classification(patient_source("p-1"), "11490-0")
    assert found is not None and (found.class_code, found.type_code) == ("90", "DOCPAT01")


def test_a_sources_document_is_classified_as_usual() -> None:
    assert contributed_classification("hospital:CHU", "EXPPAT_3") is None
