"""Turning index rows into the plain values the access policy decides on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.policy import DocumentView, Record
from pipeline.index.models import Document, Patient, RecordRelation

_RECORD_COLUMNS = (
    Patient.id,
    Patient.status,
    Patient.is_minor,
    Patient.attending_physician_id,
    Patient.emergency_opposed,
    RecordRelation.actor_id,
    RecordRelation.relation,
)


def load_record(session: Session, patient_id: str) -> Record | None:
    """The record as the policy sees it, or None when there is no such patient (one round trip)."""
    rows = session.execute(
        select(*_RECORD_COLUMNS).outerjoin(RecordRelation, RecordRelation.patient_id == Patient.id).where(Patient.id == patient_id)
    ).all()
    if not rows:
        return None
    relations: dict[str, set[str]] = {}
    for row in rows:
        if row.relation is not None:
            relations.setdefault(row.relation, set()).add(row.actor_id)
    patient = rows[0]
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


# The index columns the policy reads, in the order of DocumentView's fields after `id`.
POLICY_COLUMNS = (
    Document.id,
    Document.class_code,
    Document.type_code,
    Document.masked,
    Document.hidden_from_patient_until,
    Document.created_at,
    Document.author_id,
    Document.source,
    Document.hidden_from_representatives,
)


def policy_fields(document: Any) -> tuple:
    """What the policy knows of a document besides its id (a Document or a row of POLICY_COLUMNS)."""
    return (
        document.class_code,
        document.type_code,
        document.masked,
        document.hidden_from_patient_until,
        document.created_at.date() if document.created_at else None,
        document.author_id,
        document.source,  # the depositing facility: its professionals still see a masked document
        document.hidden_from_representatives,
    )


def document_view(document: Any) -> DocumentView:
    return DocumentView(document.id, *policy_fields(document))
