"""What the patient controls, written to the index once the access gate allowed it.

Each change is one unit of work (`pipeline.index.db.transact`); the gate has checked and audited the
attempt before. The relation and column names are the index's (pipeline/index/models.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import Document, Patient, RecordRelation
from pipeline.index.repo import insert_ignore
from pipeline.notify.contacts import key_for_saving, save_contact
from pipeline.runtime import Runtime

# How a professional stands with the record, as the patient set it: in the care team, or blocked.
Standing = Literal["authorized", "blocked"]


def set_masked(rt: Runtime, document_id: str, masked: bool) -> None:
    """Mask a document from professionals (the patient, its author and the attending physician still see it), or unmask it."""
    _update_document(rt, document_id, masked=masked)


def set_hidden_from_representatives(rt: Runtime, document_id: str, hidden: bool) -> None:
    """The patient (a minor) hides a document from their legal representatives, or shows it again."""
    _update_document(rt, document_id, hidden_from_representatives=hidden)


def _update_document(rt: Runtime, document_id: str, **values: bool) -> None:
    transact(rt.sessions, lambda session: session.execute(update(Document).where(Document.id == document_id).values(**values)))


def set_standing(rt: Runtime, patient_id: str, professional_id: str, standing: Standing, until: dt.datetime | None = None) -> None:
    """Put a professional in the care team (lifting a block), until `until` or until revoked; or block them
    (taking them out of it, a declared consent included)."""
    # Blocking ends every way in the patient gave or a professional declared; authorizing lifts the block.
    others = ("blocked",) if standing == "authorized" else ("authorized", "declared_consent")

    def work(session: Session) -> None:
        session.execute(
            delete(RecordRelation).where(
                RecordRelation.patient_id == patient_id, RecordRelation.actor_id == professional_id,
                RecordRelation.relation.in_((*others, standing)),
            )
        )  # fmt: skip
        row = {"id": new_id(), "patient_id": patient_id, "actor_id": professional_id, "relation": standing, "until": until}
        insert_ignore(session, RecordRelation, row)

    transact(rt.sessions, work)


def set_attending_physician(rt: Runtime, patient_id: str, physician_id: str | None) -> None:
    _update_patient(rt, patient_id, attending_physician_id=physician_id)


def set_emergency_opposition(rt: Runtime, patient_id: str, opposed: bool) -> None:
    """Oppose (or stop opposing) emergency access to the record."""
    _update_patient(rt, patient_id, emergency_opposed=opposed)


def close_record(rt: Runtime, patient_id: str) -> None:
    """The record accepts nothing more and nobody reads it; it is destroyed 10 years later (pipeline/retention.py)."""
    _update_patient(rt, patient_id, status="closed", closed_at=dt.datetime.now(dt.UTC))


def _update_patient(rt: Runtime, patient_id: str, **values: object) -> None:
    transact(rt.sessions, lambda session: session.execute(update(Patient).where(Patient.id == patient_id).values(**values)))


@dataclass(frozen=True)
class NotificationChoices:
    """Channels, events, and where to send (docs/domain.md, "Notifications")."""

    email: bool
    sms: bool
    every_access: bool
    documents: bool
    reimbursements: bool
    email_address: str | None
    phone: str | None


def set_notifications(rt: Runtime, patient_id: str, choices: NotificationChoices) -> None:
    """The patient's notification settings and addresses, in one transaction."""
    key = key_for_saving(rt, patient_id)  # before the transaction: it may make the record key in its own

    def work(session: Session) -> None:
        session.execute(
            update(Patient).where(Patient.id == patient_id).values(
                notify_email=choices.email, notify_sms=choices.sms, notify_every_access=choices.every_access,
                notify_documents=choices.documents, notify_reimbursements=choices.reimbursements,
            )
        )  # fmt: skip
        save_contact(rt, session, key, patient_id, choices.email_address, choices.phone)

    transact(rt.sessions, work)
