"""Legal representatives of a record (a minor's parents, an adult's guardian): registered by the
operator from the civil-status or court documents, never by the represented patient or by the
representative. A representative reads the record as the patient does (docs/domain.md, rule 2), except
what the patient asked to hide from them (`POST …/documents/{id}/hide-from-representatives`).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from pipeline.core.identity import MAX_ACTOR_ID, is_identifier, is_valid_nir, normalize_nir
from pipeline.index.base import new_id
from pipeline.index.models import Patient, RecordRelation
from pipeline.index.repo import ensure_patient, insert_ignore

RELATION = "representative"


class RepresentativeError(ValueError):
    """A malformed INS or representative id."""


def _ins(value: str) -> str:
    ins = normalize_nir(value)
    if not is_valid_nir(ins):
        raise RepresentativeError("the patient INS (NIR) is malformed or its control key is wrong")
    return ins


def _actor(value: str) -> str:
    if not is_identifier(value, MAX_ACTOR_ID):
        raise RepresentativeError(f"the representative id must be 1 to {MAX_ACTOR_ID} printable ASCII characters (their token's subject)")
    return value


def add_representative(session: Session, ins: str, actor_id: str) -> str:
    """Register `actor_id` (the subject of their tokens) as a legal representative of the patient; returns the patient id."""
    patient = ensure_patient(session, _ins(ins))
    insert_ignore(session, RecordRelation, {"id": new_id(), "patient_id": patient.id, "actor_id": _actor(actor_id), "relation": RELATION})
    session.commit()
    return patient.id


def remove_representative(session: Session, ins: str, actor_id: str) -> bool:
    """Withdraw a representative; False if they were not registered."""
    patient_id = session.scalar(select(Patient.id).where(Patient.ins == _ins(ins)))
    if patient_id is None:
        return False
    withdraw = delete(RecordRelation).where(
        RecordRelation.patient_id == patient_id, RecordRelation.actor_id == actor_id, RecordRelation.relation == RELATION
    )
    gone = cast(CursorResult[Any], session.execute(withdraw)).rowcount  # a DELETE's result is a cursor's
    session.commit()
    return bool(gone)


def list_representatives(session: Session, ins: str) -> list[str]:
    query = (
        select(RecordRelation.actor_id)
        .join(Patient, Patient.id == RecordRelation.patient_id)
        .where(Patient.ins == _ins(ins), RecordRelation.relation == RELATION)
        .order_by(RecordRelation.actor_id)
    )
    return list(session.scalars(query))


def represented_records(session: Session, actor_id: str) -> list[tuple[str, str]]:
    """(patient id, INS) of the records `actor_id` is a legal representative of (the portal lets them choose one)."""
    query = (
        select(Patient.id, Patient.ins)
        .join(RecordRelation, RecordRelation.patient_id == Patient.id)
        .where(RecordRelation.actor_id == actor_id, RecordRelation.relation == RELATION)
        .order_by(Patient.ins)
    )
    return [(row[0], row[1]) for row in session.execute(query)]
