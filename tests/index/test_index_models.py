"""Index column types (pipeline/index/models.py) read back alike on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from pipeline.index.models import Patient, new_id


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
