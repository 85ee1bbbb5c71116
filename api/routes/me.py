"""The authenticated person's own settings: a professional's contact for notifications."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ActorDep, RuntimeDep
from api.inputs import StrictBody
from api.problems import PROBLEM_RESPONSES, ApiProblem
from api.routes.record import Email, Phone
from pipeline.index.models import Contact
from pipeline.notify.contacts import save_contact

router = APIRouter(prefix="/v1/me", tags=["me"], responses=PROBLEM_RESPONSES)
CONTACT_KINDS = frozenset({"professional", "emergency_regulator", "occupational_physician"})


class ContactIn(StrictBody):
    email: Email | None = None
    phone: Phone | None = None


class ContactOut(ContactIn):
    email_rejected: str | None
    phone_rejected: str | None


def _out(contact: Contact) -> ContactOut:
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
        contact = session.get(Contact, actor.id) or Contact(id=actor.id)
    return ContactOut(
        email=contact.email, phone=contact.phone, email_rejected=contact.email_rejected, phone_rejected=contact.phone_rejected
    )


@router.put("/contact", response_model=ContactOut)
def set_contact(body: ContactIn, rt: RuntimeDep, actor: ActorDep) -> ContactOut:
    _professional_only(actor.kind)
    with rt.sessions() as session:
        contact = save_contact(session, actor.id, body.email, body.phone)
        session.commit()
        return ContactOut(
            email=contact.email, phone=contact.phone, email_rejected=contact.email_rejected, phone_rejected=contact.phone_rejected
        )
