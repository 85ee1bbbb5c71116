"""The authenticated person's own settings: a professional's contact for notifications."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ActorDep, RuntimeDep
from api.inputs import StrictBody
from api.problems import PROBLEM_RESPONSES, ApiProblem
from api.routes.record import Email, Phone
from pipeline.access.gate import PROFESSIONAL_KINDS
from pipeline.notify import contacts
from pipeline.notify.contacts import Addresses

router = APIRouter(prefix="/v1/me", tags=["me"], responses=PROBLEM_RESPONSES)
CONTACT_KINDS = PROFESSIONAL_KINDS


class ContactIn(StrictBody):
    email: Email | None = None
    phone: Phone | None = None


class ContactOut(ContactIn):
    email_rejected: str | None
    phone_rejected: str | None


def _out(contact: Addresses) -> ContactOut:
    return ContactOut(
        email=contact.email, phone=contact.phone, email_rejected=contact.email_rejected, phone_rejected=contact.phone_rejected
    )


def _professional_only(kind: str) -> None:
    if kind not in CONTACT_KINDS:
        # Patients set their addresses with their notification settings.
        raise ApiProblem(403, "not_allowed", "Forbidden", "Only health professionals have a contact here.")


@router.get("/contact", response_model=ContactOut)
def read_contact(rt: RuntimeDep, actor: ActorDep) -> ContactOut:
    """Where this professional is told of emergency accesses to their patients' records."""
    _professional_only(actor.kind)
    with rt.sessions() as session:
        return _out(contacts.read_contact(rt, session, actor.id))


@router.put("/contact", response_model=ContactOut)
def set_contact(body: ContactIn, rt: RuntimeDep, actor: ActorDep) -> ContactOut:
    _professional_only(actor.kind)
    return _out(contacts.set_contact(rt, actor.id, body.email, body.phone))
