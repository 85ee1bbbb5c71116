"""The patient's sections (pipeline/record/sections.py), on SQLite and PostgreSQL: sealed under the record key."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from pipeline.core.identity import with_key
from pipeline.core.sealedfields import SealedFieldError
from pipeline.index.models import PatientSectionRow
from pipeline.index.repo import ensure_patient
from pipeline.index.states import PatientSection
from pipeline.record.sections import read_section, write_section
from tests.conftest import raw_dump


def _patients(rt) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    with rt.sessions() as session:
        first, second = (ensure_patient(session, with_key(body)).id for body in ("2850575123456", "1920113055123"))
        session.commit()
    return first, second


def test_a_section_reads_back_as_written_and_a_second_write_replaces_it(rt) -> None:
    patient_id, _ = _patients(rt)
    write_section(rt, patient_id, PatientSection.MEDICAL_PROFILE, {"allergies": ["arachide"]})
    write_section(rt, patient_id, PatientSection.MEDICAL_PROFILE, {"allergies": ["latex"]})
    assert read_section(rt, patient_id, PatientSection.MEDICAL_PROFILE) == {"allergies": ["latex"]}
    assert read_section(rt, patient_id, PatientSection.EMERGENCY_CONTACTS) is None
    assert b"latex" not in raw_dump(rt.engine)


def test_a_section_copied_onto_another_record_does_not_open(rt) -> None:
    first, second = _patients(rt)
    write_section(rt, first, PatientSection.MEDICAL_PROFILE, {"blood_group": "AB-"})
    write_section(rt, second, PatientSection.MEDICAL_PROFILE, {})
    with rt.sessions() as session:
        stolen = session.scalars(select(PatientSectionRow.content_sealed).where(PatientSectionRow.patient_id == first)).one()
        session.execute(update(PatientSectionRow).where(PatientSectionRow.patient_id == second).values(content_sealed=stolen))
        session.commit()
    with pytest.raises(SealedFieldError):
        read_section(rt, second, PatientSection.MEDICAL_PROFILE)
