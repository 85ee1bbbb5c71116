"""Turning index rows into the plain values the access policy decides on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.policy import DocumentView, Record
from pipeline.index.models import Document, Patient, RecordRelation


def load_record(session: Session, patient_id: str) -> Record | None:
    """The record as the policy sees it, or None when there is no such patient."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        return None
    relations: dict[str, set[str]] = {}
    for actor_id, relation in session.execute(
        select(RecordRelation.actor_id, RecordRelation.relation).where(RecordRelation.patient_id == patient_id)
    ):
        relations.setdefault(relation, set()).add(actor_id)
    return Record(
        patient_id=patient.id,
        status=patient.status,
        is_minor=patient.is_minor,
        representatives=frozenset(relations.get("representative", ())),
        care_team=frozenset(relations.get("authorized", ())),
        blocked=frozenset(relations.get("blocked", ())),
        attending_physician=patient.attending_physician_id,
        emergency_opposed=patient.emergency_opposed,
        occupational_consent=frozenset(relations.get("occupational_consent", ())),
    )


def document_view(document: Document) -> DocumentView:
    return DocumentView(
        id=document.id,
        class_code=document.class_code,
        type_code=document.type_code,
        masked=document.masked,
        hidden_from_patient_until=document.hidden_from_patient_until,
        deposited_on=document.created_at.date() if document.created_at else None,
        author_id=document.author_id,
        author_facility_id=document.source,
        hidden_from_representatives=document.hidden_from_representatives,
    )
