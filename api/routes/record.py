"""The record as a whole: care history, access log, and what the patient controls."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.access import LogLine, access_log, check
from api.deps import ActorDep, EmergencyDep, RuntimeDep
from api.inputs import ActorIdField, ActorIdPath, OffsetQuery, PageQuery, StrictBody, UntilField
from api.problems import PROBLEM_RESPONSES
from pipeline.access import controls
from pipeline.access.policy import Action
from pipeline.carehistory.history import CarePage, care_history
from pipeline.index.queries import patient as find_patient
from pipeline.notify.contacts import read_contact

router = APIRouter(prefix="/v1/patients/{patient_id}", tags=["record"], responses=PROBLEM_RESPONSES)


@router.get("/care-history", response_model=CarePage)
def read_care_history(
    patient_id: str,
    rt: RuntimeDep,
    actor: ActorDep,
    emergency: EmergencyDep,
    page: PageQuery = 1,
    page_size: int = Query(default=50, ge=1, le=500),
) -> CarePage:
    """Reimbursed care of the last 24 months (Europe/Paris calendar), newest first. With `X-Emergency-Reason`, a
    break-glass read of this reimbursement data (class 60 of the access matrix), audited as an emergency override."""
    check(rt, actor, Action.READ_CARE_HISTORY, patient_id, emergency_reason=emergency)
    with rt.sessions() as session:
        return care_history(session, patient_id, page=page, page_size=page_size, record_keys=rt.record_keys)


class AccessLogEntry(BaseModel):
    at: dt.datetime
    actor_id: str
    actor_kind: str
    profession: str | None
    action: str
    document_id: str | None
    outcome: str
    reason: str = Field(description="Why; on the reader's own denials, the answer they got (`not_found` for a 404).")
    emergency: bool
    justification: str | None = Field(
        default=None, description="The break-glass reason the actor gave; shown to the patient and the attending physician only."
    )


@router.get("/access-log", response_model=list[AccessLogEntry])
def read_access_log(
    patient_id: str,
    rt: RuntimeDep,
    actor: ActorDep,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: OffsetQuery = 0,
) -> list[AccessLogEntry]:
    """Who did what on the record, as far as this reader may see: a professional only the entries about their own
    actions; nobody the entries about a document hidden from them; a legal representative not the patient's own."""
    access = check(rt, actor, Action.READ_ACCESS_LOG, patient_id)
    return [_log_entry(line) for line in access_log(rt, actor, access, limit=limit, offset=offset)]


def _log_entry(line: LogLine) -> AccessLogEntry:
    e = line.entry
    return AccessLogEntry(at=e.at, actor_id=e.actor_id, actor_kind=e.actor_kind, profession=e.profession, action=e.action,
                          document_id=e.document_id, outcome=e.outcome, reason=line.reason, emergency=e.emergency,
                          justification=line.justification)  # fmt: skip


class Done(BaseModel):
    ok: bool = True


@router.post("/documents/{document_id}/mask", response_model=Done)
def mask_document(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Hide a document from professionals (the patient, its author and the attending physician still see it)."""
    check(rt, actor, Action.MASK, patient_id, document_id=document_id)
    controls.set_masked(rt, document_id, True)
    return Done()


@router.post("/documents/{document_id}/unmask", response_model=Done)
def unmask_document(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep) -> Done:
    check(rt, actor, Action.UNMASK, patient_id, document_id=document_id)
    controls.set_masked(rt, document_id, False)
    return Done()


@router.post("/documents/{document_id}/hide-from-representatives", response_model=Done)
def hide_from_representatives(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The patient (a minor) hides a document from their legal representatives; the patient only."""
    check(rt, actor, Action.HIDE_FROM_REPRESENTATIVES, patient_id, document_id=document_id)
    controls.set_hidden_from_representatives(rt, document_id, True)
    return Done()


@router.post("/documents/{document_id}/show-to-representatives", response_model=Done)
def show_to_representatives(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Undo `hide-from-representatives`; the patient only."""
    check(rt, actor, Action.SHOW_TO_REPRESENTATIVES, patient_id, document_id=document_id)
    controls.set_hidden_from_representatives(rt, document_id, False)
    return Done()


class AuthorizeIn(StrictBody):
    until: UntilField | None = None


@router.post("/professionals/{professional_id}/authorize", response_model=Done)
def authorize_professional(
    patient_id: str, professional_id: ActorIdPath, rt: RuntimeDep, actor: ActorDep, body: AuthorizeIn | None = None
) -> Done:
    """Put a professional in the care team (and lift a block), until `until` (in force strictly before) or until revoked."""
    check(rt, actor, Action.AUTHORIZE_PROFESSIONAL, patient_id)
    controls.set_standing(rt, patient_id, professional_id, "authorized", body.until if body else None)
    return Done()


@router.post("/professionals/{professional_id}/block", response_model=Done)
def block_professional(patient_id: str, professional_id: ActorIdPath, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Block a professional (and take them out of the care team: an authorization or a declared consent ends)."""
    check(rt, actor, Action.BLOCK_PROFESSIONAL, patient_id)
    controls.set_standing(rt, patient_id, professional_id, "blocked")
    return Done()


class AttendingIn(StrictBody):
    physician_id: ActorIdField | None


class OppositionIn(StrictBody):
    opposed: bool


# Explicit ASCII classes: the API (Rust regex) and clients reading the OpenAPI document must agree on them.
EMAIL_PATTERN = r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63}$"
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
# contacts.email and contacts.phone: the patterns alone allow longer than the columns hold.
Email = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]
Phone = Annotated[str, Field(max_length=16, pattern=PHONE_PATTERN, description="E.164, e.g. +33612345678")]


class NotificationsIn(StrictBody):
    """Channels, events, and where to send. Emergency accesses and a professional's first access are always told."""

    email: bool
    sms: bool
    every_access: bool = False
    documents: bool = True
    reimbursements: bool = True
    email_address: Email | None = None
    phone: Phone | None = None


class NotificationsOut(NotificationsIn):
    email_rejected: str | None = Field(description="Why the email address was refused for good (then it is not used until changed).")
    phone_rejected: str | None = Field(description="Why the phone number was refused for good.")


@router.put("/attending-physician", response_model=Done)
def set_attending_physician(patient_id: str, body: AttendingIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    check(rt, actor, Action.SET_ATTENDING_PHYSICIAN, patient_id)
    controls.set_attending_physician(rt, patient_id, body.physician_id)
    return Done()


@router.put("/emergency-opposition", response_model=Done)
def oppose_emergency(patient_id: str, body: OppositionIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Oppose (or stop opposing) emergency access to the record."""
    check(rt, actor, Action.OPPOSE_EMERGENCY, patient_id)
    controls.set_emergency_opposition(rt, patient_id, body.opposed)
    return Done()


@router.get("/notifications", response_model=NotificationsOut)
def read_notifications(patient_id: str, rt: RuntimeDep, actor: ActorDep) -> NotificationsOut:
    """The patient's notification settings, and any address a channel refused."""
    check(rt, actor, Action.READ_NOTIFICATIONS, patient_id)
    with rt.sessions() as session:
        patient = find_patient(session, patient_id)
        contact = read_contact(rt, session, patient_id)
    assert patient is not None  # check() answered 404 otherwise
    return NotificationsOut(
        email=patient.notify_email, sms=patient.notify_sms, every_access=patient.notify_every_access,
        documents=patient.notify_documents, reimbursements=patient.notify_reimbursements, email_address=contact.email,
        phone=contact.phone, email_rejected=contact.email_rejected, phone_rejected=contact.phone_rejected,
    )  # fmt: skip


@router.put("/notifications", response_model=Done)
def set_notifications(patient_id: str, body: NotificationsIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    check(rt, actor, Action.SET_NOTIFICATIONS, patient_id)
    choices = controls.NotificationChoices(
        email=body.email, sms=body.sms, every_access=body.every_access, documents=body.documents,
        reimbursements=body.reimbursements, email_address=body.email_address, phone=body.phone,
    )  # fmt: skip
    controls.set_notifications(rt, patient_id, choices)
    return Done()


@router.post("/close", response_model=Done)
def close_record(patient_id: str, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Close the record: it accepts nothing more, nobody reads it, it is destroyed 10 years later."""
    check(rt, actor, Action.CLOSE_RECORD, patient_id)
    controls.close_record(rt, patient_id)
    return Done()
