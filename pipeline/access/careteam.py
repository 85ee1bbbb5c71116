"""The care team over time, written to the index once the access gate allowed the act (docs/domain.md, "Finding a
record, and the care team over time"; "What the patient controls").

Declared consents, facilities authorized for a stay, authorizations that end, the attending physician's handover
(two steps: the attending physician names an already-authorized successor, the patient agrees), the patient's
opposition to the record and their express consent to an occupational physician. Each change is one unit of
work; the gate has decided and audited the attempt before. Who is in the care team is the policy's
(`pipeline/access/membership.py`); `care_team` below only lists the rows, with what ended marked so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from pipeline.access.policy import may_become_attending
from pipeline.access.recordview import load_record, record_authors
from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import Patient, RecordRelation
from pipeline.index.states import RecordStatus, Relation
from pipeline.runtime import Runtime


class TransferError(ValueError):
    """The attending physician's handover cannot go on: `code` is `no_transfer_pending` or `not_in_care_team`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _replace(session: Session, patient_id: str, actor_id: str, relation: Relation, **values: object) -> None:
    """The one row of (patient, actor, relation), written anew (a second grant replaces the first, its end too)."""
    _delete(session, patient_id, actor_id, relation)
    session.add(RecordRelation(id=new_id(), patient_id=patient_id, actor_id=actor_id, relation=relation, **values))


def _delete(session: Session, patient_id: str, actor_id: str | None, relation: Relation) -> bool:
    query = delete(RecordRelation).where(RecordRelation.patient_id == patient_id, RecordRelation.relation == relation)
    if actor_id is not None:
        query = query.where(RecordRelation.actor_id == actor_id)
    return bool(cast(CursorResult[Any], session.execute(query)).rowcount)


def declare_consent(rt: Runtime, patient_id: str, professional_id: str, until: dt.datetime | None = None) -> None:
    """A professional declares that the patient, present, consents to their access (until `until`, or revoked)."""
    values = {"until": until, "granted_by": professional_id}
    transact(rt.sessions, lambda s: _replace(s, patient_id, professional_id, Relation.DECLARED_CONSENT, **values))


def revoke_consent(rt: Runtime, patient_id: str, professional_id: str) -> bool:
    """The patient revokes a declared consent; False if there was none."""
    return transact(rt.sessions, lambda s: _delete(s, patient_id, professional_id, Relation.DECLARED_CONSENT))


def authorize_facility(rt: Runtime, patient_id: str, finess: str, until: dt.datetime) -> None:
    """The patient authorizes a facility (its professionals, by their token's facility) for a stay ending at `until`."""
    transact(rt.sessions, lambda s: _replace(s, patient_id, finess, Relation.FACILITY, until=until))


def revoke_facility(rt: Runtime, patient_id: str, finess: str) -> bool:
    return transact(rt.sessions, lambda s: _delete(s, patient_id, finess, Relation.FACILITY))


def set_occupational_consent(rt: Runtime, patient_id: str, physician_id: str, consent: bool) -> None:
    """The patient's express consent to one occupational physician (docs/domain.md rule 6), given or withdrawn."""

    def work(session: Session) -> None:
        if consent:
            _replace(session, patient_id, physician_id, Relation.OCCUPATIONAL_CONSENT)
        else:
            _delete(session, patient_id, physician_id, Relation.OCCUPATIONAL_CONSENT)

    transact(rt.sessions, work)


def set_record_opposition(rt: Runtime, patient_id: str, opposed: bool) -> None:
    """Oppose the record (it accepts no deposit and nobody reads it; its content is kept, sealed, until the opposition
    is lifted or the record closed) or lift the opposition (the record is open again, as it was)."""
    status = RecordStatus.OPPOSED if opposed else RecordStatus.OPEN
    was = RecordStatus.OPEN if opposed else RecordStatus.OPPOSED
    # Only from the other state: a closed record stays closed.
    query = update(Patient).where(Patient.id == patient_id, Patient.status == was).values(status=status)
    transact(rt.sessions, lambda session: session.execute(query))


def propose_transfer(rt: Runtime, patient_id: str, attending_id: str, successor_id: str, *, now: dt.datetime | None = None) -> None:
    """The attending physician names their successor; the patient's agreement (`accept_transfer`) completes it.
    Raises TransferError(`not_in_care_team`) when the successor is not already authorized (or is blocked)."""

    def work(session: Session) -> None:
        record = load_record(session, patient_id, now=now, for_actor=successor_id)
        if record is None or not may_become_attending(record, successor_id):
            raise TransferError("not_in_care_team", "the successor must be a physician already in the patient's care team")
        _delete(session, patient_id, None, Relation.ATTENDING_PROPOSAL)  # one proposal at a time: the latest
        session.add(RecordRelation(id=new_id(), patient_id=patient_id, actor_id=successor_id, relation=Relation.ATTENDING_PROPOSAL,
                                   granted_by=attending_id))  # fmt: skip

    transact(rt.sessions, work)


def accept_transfer(rt: Runtime, patient_id: str, *, now: dt.datetime | None = None) -> str:
    """The patient agrees to the pending handover: the successor becomes the attending physician (returned).

    Raises TransferError: `no_transfer_pending` (none, or its proposer is no longer the attending physician),
    `not_in_care_team` (the successor left the care team, or was blocked, since)."""

    def work(session: Session) -> str:
        proposal = session.scalars(
            select(RecordRelation).where(RecordRelation.patient_id == patient_id, RecordRelation.relation == Relation.ATTENDING_PROPOSAL)
        ).first()
        record = load_record(session, patient_id, now=now, for_actor=proposal.actor_id if proposal else None)
        if proposal is None or record is None or proposal.granted_by != record.attending_physician:
            raise TransferError("no_transfer_pending", "no handover of the attending physician is waiting for the patient")
        if not may_become_attending(record, proposal.actor_id):
            raise TransferError("not_in_care_team", "the successor is no longer in the patient's care team")
        successor = proposal.actor_id
        session.delete(proposal)
        session.execute(update(Patient).where(Patient.id == patient_id).values(attending_physician_id=successor))
        return successor

    return transact(rt.sessions, work)


@dataclass(frozen=True)
class TeamRow:
    """One relation of the record, as the patient reads it."""

    actor_id: str  # a professional's id, a facility's FINESS
    relation: str
    since: dt.datetime
    until: dt.datetime | None
    granted_by: str | None
    in_force: bool


LISTED = (Relation.AUTHORIZED, Relation.BLOCKED, Relation.DECLARED_CONSENT, Relation.FACILITY, Relation.OCCUPATIONAL_CONSENT,
          Relation.ATTENDING_PROPOSAL)  # fmt: skip


@dataclass(frozen=True)
class CareTeam:
    rows: list[TeamRow]
    authors: list[str]  # professionals who authored a live document of the record: they treated the patient


def care_team(rt: Runtime, patient_id: str, *, now: dt.datetime | None = None) -> CareTeam:
    """The record's care-team relations (not the representatives: the operator's), oldest first, each marked
    whether it is in force at `now` (a grant strictly before its end), and the record's authors."""
    moment = now or dt.datetime.now(dt.UTC)
    with rt.sessions() as session:
        rows = session.scalars(
            select(RecordRelation)
            .where(RecordRelation.patient_id == patient_id, RecordRelation.relation.in_(LISTED))
            .order_by(RecordRelation.created_at, RecordRelation.actor_id)
        ).all()
        authors = record_authors(session, patient_id)
        team = [TeamRow(r.actor_id, r.relation, r.created_at, r.until, r.granted_by, r.until is None or moment < r.until) for r in rows]
    return CareTeam(team, authors)
