"""A document over time (docs/domain.md, "Documents over time"): its versions, and what its source may do to it.

Versions of one document share the source and its `source_document_id`, numbered from 1 (`Document.version`).
A source:

- replaces its document by depositing changed bytes under the same `source_document_id` with the manifest's
  `version_action` = `replace`: the new version is `current`, the old one `superseded` (still readable through
  the document's history). Changed bytes without it stay a `duplicate_conflict` rejection (`replacement`);
- deprecates it (`deprecate`): the current version becomes `superseded` with no successor;
- withdraws one sent in error (`withdraw`): every version is crypto-shredded (its wrapped data key destroyed
  first, then its object deleted) and marked `entered-in-error`; the audit entries stay, and the patient is
  told, without medical content (an outbox row of kind `document_withdrawn`), if they could see it;
- updates the visibility it decides as the author (`set_hold`): the hold from the patient until the
  announcement consultation (the policy still releases it one month after the deposit).

Each change is one unit of work with its audit entry. A source reaches its own documents only: another
source's document and a missing one are the same `None`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pipeline.access.audit import AuditEvent, append
from pipeline.access.policy import Action, Actor, ActorKind, decide, hidden_from_patient
from pipeline.access.recordview import document_view, load_record
from pipeline.core.clock import paris_date
from pipeline.core.reasons import Rejected, Transient
from pipeline.index import repo
from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import Document, Outbox
from pipeline.index.states import AuditOutcome, DocumentStatus, OutboxKind, VersionAction
from pipeline.notify.releases import Held, released_event
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)
# Passes of a withdrawal: the last finds nothing left to shred (a replacement racing it is then rejected
# `document_withdrawn`, its predecessor being no longer live).
WITHDRAW_PASSES = 3


class VersionRace(Transient):
    """The version a deposit replaces stopped being current before the deposit committed: tried again."""


@dataclass(frozen=True)
class Replacement:
    """The version a deposit replaces, and the number the new one takes."""

    previous_id: str
    version: int
    previous_current: bool


def replacement(existing: Document | None, content_hmac: str, version_action: str | None, patient_id: str) -> Replacement | None:
    """What a deposit of `content_hmac` under the id of `existing` (the latest version, or None) is:
    None for a new document or a re-send of the latest version (indexed once), a Replacement when the
    source asked for one; Rejected `duplicate_conflict` for changed bytes it did not, `document_withdrawn`
    for a document its source withdrew, `other_patients_document` for a deposit (a re-send or a new version)
    under the id of another patient's document (a document sent to the wrong patient is withdrawn, not moved)."""
    if existing is None:
        return None
    if existing.status == DocumentStatus.ENTERED_IN_ERROR or not existing.live:
        raise Rejected("document_withdrawn")
    if existing.patient_id != patient_id:
        # Neither linked nor replaced across records: the source believes it deposits for this patient.
        raise Rejected("other_patients_document")
    if existing.content_hmac == content_hmac:
        return None
    if version_action != VersionAction.REPLACE:
        raise Rejected("duplicate_conflict")
    return Replacement(existing.id, existing.version + 1, existing.status == DocumentStatus.CURRENT)


def link_replacement(session: Session, replaced: Replacement, successor_id: str) -> None:
    """In the deposit's unit of work: the replaced version superseded by the new one (VersionRace if another
    deposit superseded it meanwhile; the message's retry then replaces the newer one)."""
    if replaced.previous_current and not repo.supersede(session, replaced.previous_id, successor_id):
        raise VersionRace(f"version_race document={replaced.previous_id}")
    if not replaced.previous_current:  # deprecated before: it points at its successor all the same
        previous = session.get(Document, replaced.previous_id)
        if previous is not None:
            previous.superseded_by_id = successor_id


def _source_event(document: Document, action: str, reason: str) -> AuditEvent:
    return AuditEvent(
        chain=document.patient_id,
        actor_id=document.source,
        actor_kind="source",
        profession=None,
        action=action,
        document_id=document.id,
        outcome=AuditOutcome.ALLOWED,
        reason=reason,
    )


def deprecate(rt: Runtime, source: str, source_document_id: str) -> Document | None:
    """The source deprecates its document: the current version becomes superseded, with no successor.
    Returns the version deprecated (or the latest, if none was current), None when the source has no such
    document or withdrew it."""

    def work(session: Session) -> Document | None:
        latest = repo.find_document(session, source, source_document_id)
        if latest is None or not latest.live:
            return None
        if repo.supersede(session, latest.id, None):
            append(session, rt.audit_key, _source_event(latest, "deprecate", "source_deprecated"))
            session.refresh(latest)
        return latest

    return transact(rt.sessions, work, retries=3)


def withdraw(rt: Runtime, source: str, source_document_id: str) -> list[str]:
    """The source withdraws a document sent in error: every version crypto-shredded and marked entered-in-error,
    an audit entry each, the patient told (no medical content) if they could see it. Returns the ids of the
    withdrawn versions (empty: the source has no such document). Idempotent: withdrawing again appends nothing
    and tells nobody, and deletes the objects a crash may have left. Keys first, in one transaction; objects
    deleted after, so a crash between leaves ciphertext no key opens."""
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> tuple[list[Document], bool]:
        every = repo.document_versions(session, source, source_document_id)
        live = [d for d in every if d.live]
        seen = bool(live) and _patient_sees(session, live, paris_date())
        for document in live:
            document.wrapped_key, document.shredded_at = None, now
            document.status, document.status_changed_at = DocumentStatus.ENTERED_IN_ERROR, now
            append(session, rt.audit_key, _source_event(document, "withdraw", "entered_in_error"))
        if live and seen:
            # Told only of what they could see: a document still held from them (until its announcement) was
            # never announced, and its withdrawal must not announce it either.
            latest = live[-1]
            row = {"id": new_id(), "patient_id": latest.patient_id, "kind": OutboxKind.DOCUMENT_WITHDRAWN, "ref_id": latest.id,
                   "source": source}  # fmt: skip
            repo.insert_ignore(session, Outbox, row)
        if live:
            log.info("%d version(s) of a document withdrawn by %s", len(live), source)
        return [d for d in every if d.status == DocumentStatus.ENTERED_IN_ERROR], bool(live)

    for _ in range(WITHDRAW_PASSES):
        # A replacement committing while a pass runs adds a version the pass did not see: the next pass takes it.
        gone, changed = transact(rt.sessions, work, retries=3)
        if not changed:
            break
    for document in gone:
        rt.store.delete(document.object_key)
    return [document.id for document in gone]


def _patient_sees(session: Session, documents: list[Document], today: dt.date) -> bool:
    """Whether the patient may read the metadata of one of `documents` today, as the access policy decides."""
    record = load_record(session, documents[0].patient_id)
    if record is None:
        return False
    patient = Actor(record.patient_id, ActorKind.PATIENT)
    return any(decide(patient, Action.READ_METADATA, record, document_view(d), today=today).allowed for d in documents)


def set_hold(rt: Runtime, source: str, source_document_id: str, until: dt.date | None) -> Document | None:
    """The author holds its current version from the patient until `until` (the announcement consultation;
    None releases it). The policy releases a hold one month after the deposit whatever it says."""

    def work(session: Session) -> Document | None:
        latest = repo.find_document(session, source, source_document_id)
        if latest is None or not latest.live:
            return None
        now = dt.datetime.now(dt.UTC)
        was_held = hidden_from_patient(document_view(latest), paris_date(now))
        latest.hidden_from_patient_until = until
        append(session, rt.audit_key, _source_event(latest, "set_visibility", "held" if until else "released"))
        if was_held and until is None:
            # Shown from today: told now, as a hold that ends on its date is (pipeline/notify/releases.py).
            repo.insert_ignore(session, Outbox, released_event(session, Held.of(session, latest), now, now))
        return latest

    return transact(rt.sessions, work, retries=3)


def source_versions(rt: Runtime, source: str, source_document_id: str) -> list[Document]:
    """Every version of the source's own document, oldest first, withdrawn ones included (their metadata only)."""
    with rt.sessions() as session:
        return repo.document_versions(session, source, source_document_id)


def chain_of(session: Session, document: Document) -> list[Document]:
    """Every live version of `document`'s document in its record, oldest first: its history."""
    return [d for d in repo.document_versions(session, document.source, document.source_document_id)
            if d.live and d.patient_id == document.patient_id]  # fmt: skip
