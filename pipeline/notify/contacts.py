"""Where a person is told things (patients and professionals alike), sealed at rest.

A patient's email and phone are sealed under the record key, so destroying the record shreds them;
a professional belongs to no record, so their contact has a key of its own, wrapped by a master key
and kept in the row (pipeline/core/sealedfields.py). The same key seals the address copied into each
message for that person (`notifications.address_sealed`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pipeline.core.keys import WrappedKey, new_key
from pipeline.core.sealedfields import SealedFieldError, contact_context, contact_key_context, open_text, seal_text
from pipeline.index.models import Contact, Patient
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Addresses:
    """A person's addresses in clear, and any refusal recorded for them."""

    email: str | None = None
    phone: str | None = None
    email_rejected: str | None = None
    phone_rejected: str | None = None


@dataclass(frozen=True)
class ContactKey:
    """The key sealing a person's addresses; `wrapped` is a professional's own key as stored in the row."""

    key: bytes
    wrapped: WrappedKey | None


def key_for_saving(rt: Runtime, person_id: str) -> ContactKey:
    """The key to seal `person_id`'s addresses with, made if they have none yet.

    A patient's record key may be created here in its own transaction: call this before the
    caller's writing transaction, never inside it.
    """
    with rt.sessions() as session:
        is_patient = session.get(Patient, person_id) is not None
        contact = session.get(Contact, person_id)
    if is_patient:
        return ContactKey(rt.record_keys.for_patient(person_id).key, None)
    if contact is not None and contact.wrapped_key is not None and contact.master_key_id is not None:
        wrapped = WrappedKey(contact.master_key_id, contact.wrapped_key)
        return ContactKey(rt.keys.unwrap(wrapped, contact_key_context(person_id)), wrapped)
    key = new_key()
    return ContactKey(key, rt.keys.wrap(key, contact_key_context(person_id)))


def opening_key(rt: Runtime, session: Session, person_id: str) -> bytes | None:
    """The key `person_id`'s addresses are sealed under, or None if they have none (or their record is
    destroyed). Creates nothing: safe inside a writing transaction."""
    if session.get(Patient, person_id) is not None:
        record = rt.record_keys.find(session, person_id)
        return record.key if record else None
    contact = session.get(Contact, person_id)
    if contact is None or contact.wrapped_key is None or contact.master_key_id is None:
        return None
    return rt.keys.unwrap(WrappedKey(contact.master_key_id, contact.wrapped_key), contact_key_context(person_id))


def read_contact(rt: Runtime, session: Session, person_id: str) -> Addresses:
    """A person's addresses, opened; empty if they have none."""
    contact = session.get(Contact, person_id)
    if contact is None:
        return Addresses()
    key = opening_key(rt, session, person_id) if contact.email_sealed or contact.phone_sealed else None

    def opened(field: str, blob: bytes | None) -> str | None:
        if key is None or blob is None:
            return None
        try:
            return open_text(key, blob, contact_context(person_id, field))
        except SealedFieldError:
            log.error("the %s of contact %s does not open under its key", field, person_id)
            return None

    return Addresses(
        opened("email", contact.email_sealed), opened("phone", contact.phone_sealed), contact.email_rejected, contact.phone_rejected
    )


def save_contact(rt: Runtime, session: Session, key: ContactKey, person_id: str, email: str | None, phone: str | None) -> Addresses:
    """Set a person's addresses in the caller's transaction, sealed under `key` (from key_for_saving);
    a changed address loses its old rejection."""
    current = read_contact(rt, session, person_id)
    contact = session.get(Contact, person_id)
    if contact is None:
        contact = Contact(id=person_id)
        session.add(contact)
    if current.email != email:
        contact.email_rejected = None
    if current.phone != phone:
        contact.phone_rejected = None
    contact.email_sealed = seal_text(key.key, email, contact_context(person_id, "email"))
    contact.phone_sealed = seal_text(key.key, phone, contact_context(person_id, "phone"))
    if key.wrapped is not None:
        contact.master_key_id, contact.wrapped_key = key.wrapped.key_id, key.wrapped.blob
    contact.updated_at = dt.datetime.now(dt.UTC)
    return Addresses(email, phone, contact.email_rejected, contact.phone_rejected)


def set_contact(rt: Runtime, person_id: str, email: str | None, phone: str | None) -> Addresses:
    """Set a person's addresses in a transaction of its own."""
    key = key_for_saving(rt, person_id)
    with rt.sessions() as session:
        saved = save_contact(rt, session, key, person_id, email, phone)
        session.commit()
    return saved
