"""Where a person is told things (patients and professionals alike)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from pipeline.index.models import Contact


def save_contact(session: Session, person_id: str, email: str | None, phone: str | None) -> Contact:
    """Set a person's addresses in the caller's transaction; a changed address loses its old rejection."""
    contact = session.get(Contact, person_id)
    if contact is None:
        contact = Contact(id=person_id)
        session.add(contact)
    if contact.email != email:
        contact.email, contact.email_rejected = email, None
    if contact.phone != phone:
        contact.phone, contact.phone_rejected = phone, None
    contact.updated_at = dt.datetime.now(dt.UTC)
    return contact
