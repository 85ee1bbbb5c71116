"""Index column types (pipeline/index/models.py) read back alike on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from pipeline.index.base import new_id
from pipeline.index.models import Patient
from pipeline.index.states import RecordStatus


def test_moments_read_back_as_the_same_instant_in_utc_with_their_offset(rt):
    paris_evening = dt.datetime(2026, 3, 1, 23, 30, 15, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    patient_id = new_id()
    with rt.sessions() as session:
        session.add(Patient(id=patient_id, ins="185057512345673", status="closed", closed_at=paris_evening))
        session.commit()
    with rt.sessions() as session:
        patient = session.get(Patient, patient_id)
        closed_at, created_at = patient.closed_at, patient.created_at  # set by us, and by the database's clock
    assert closed_at == paris_evening and closed_at.utcoffset() == dt.timedelta(0)
    assert closed_at.isoformat() == "2026-03-01T21:30:15.250000+00:00"
    assert created_at.utcoffset() == dt.timedelta(0)
    assert abs(created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_a_state_column_stores_the_plain_string_and_reads_back_the_member(rt):
    patient_id = new_id()
    with rt.sessions() as session:
        session.add(Patient(id=patient_id, ins="185057512345673", status=RecordStatus.CLOSED))
        session.commit()
    with rt.engine.connect() as connection:
        stored = connection.execute(text("SELECT status FROM patients WHERE id = :id"), {"id": patient_id}).scalar_one()
    with rt.sessions() as session:
        status = session.get(Patient, patient_id).status
    assert type(stored) is str and stored == "closed"
    assert status is RecordStatus.CLOSED


def test_a_state_column_refuses_a_value_outside_its_vocabulary(rt):
    with rt.sessions() as session:
        session.add(Patient(id=new_id(), ins="185057512345673", status="archived"))
        with pytest.raises(StatementError):
            session.commit()
