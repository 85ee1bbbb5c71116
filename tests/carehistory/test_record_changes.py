"""The count of record changes (migration 0020): what moves it, what leaves it, on PostgreSQL (the feed worker keeps the
records it read while it stays: pipeline/carehistory/knownrecords.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, text, update

from pipeline.access.controls import close_record, set_emergency_opposition
from pipeline.index.base import new_id
from pipeline.index.models import Patient, RecordChanges, RecordKey
from pipeline.runtime import Runtime


@pytest.fixture
def pg(rt: Runtime) -> Runtime:
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's feed path keeps no records: its count has no triggers")
    return rt


def _changes(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(RecordChanges.changes))


def _record(rt: Runtime, ins: str = "185057512345678") -> str:
    """An open record with its key."""
    patient_id = new_id()
    with rt.sessions() as session:
        session.add(Patient(id=patient_id, ins=ins, status="open"))
        session.commit()
    rt.record_keys.for_patient(patient_id)
    return patient_id


def test_making_a_record_and_its_key_leaves_the_count(pg):
    before = _changes(pg)
    _record(pg)
    assert _changes(pg) == before


def test_closing_a_record_moves_the_count(pg):
    patient_id = _record(pg)
    before = _changes(pg)
    close_record(pg, patient_id)
    assert _changes(pg) > before


def test_destroying_a_record_key_moves_the_count(pg):
    patient_id = _record(pg)
    before = _changes(pg)
    pg.record_keys.destroy(patient_id)
    assert _changes(pg) > before


def test_deleting_a_record_moves_the_count(pg):
    patient_id = _record(pg)
    before = _changes(pg)
    with pg.sessions() as session:
        session.execute(delete(RecordKey).where(RecordKey.patient_id == patient_id))
        session.execute(delete(Patient).where(Patient.id == patient_id))
        session.commit()
    assert _changes(pg) > before


def test_a_patients_other_settings_and_a_keys_rewrap_leave_the_count(pg):
    patient_id = _record(pg)
    before = _changes(pg)
    set_emergency_opposition(pg, patient_id, True)
    with pg.sessions() as session:
        session.execute(update(RecordKey).where(RecordKey.patient_id == patient_id).values(wrapped=RecordKey.wrapped))
        session.commit()
    assert _changes(pg) == before


def test_a_change_rolled_back_leaves_the_count(pg):
    patient_id = _record(pg)
    before = _changes(pg)
    with pg.sessions() as session:
        session.execute(text("UPDATE patients SET status = 'closed' WHERE id = :id"), {"id": patient_id})
        session.rollback()
    assert _changes(pg) == before
