"""The operator's entry points on a record, by the patient's INS: the minor status and the legal representatives
(docs/domain.md rule 1; registered from civil-status or court documents, never by the patient nor by the
representative: the representative flow would have the claimant vouch for themselves).

The operator (actor kind `operator`) reads nothing of the record; the policy lets it do these two acts only.
Any other actor is answered as for a record that does not exist (NOT_FOUND), and no record is made for them.
For the operator the record is made when there is none yet (as a deposit makes it), so its answer does not
tell whether one existed. Every attempt is audited: the operator's in the patient's chain (the patient reads
who registered whom in their access log), a refused actor's in the "-" chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from pipeline.access.audit import NO_PATIENT
from pipeline.access.gate import Access, Refused, Verdict, audit, check
from pipeline.access.policy import Action, Actor, Decision, Record, decide
from pipeline.access.vocabulary import NOT_FOUND
from pipeline.core.clock import paris_date
from pipeline.core.identity import parse_ins
from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import Patient, RecordRelation
from pipeline.index.repo import ensure_patient, insert_ignore
from pipeline.index.states import Relation
from pipeline.runtime import Runtime

Apply = Callable[[Session, str], object]


def set_minor(rt: Runtime, actor: Actor, ins: str, minor: bool, *, oid: str | None = None) -> Verdict:
    """Set whether the patient of `ins` is a minor. Raises InsError for a malformed INS."""
    return _on_record(
        rt, actor, Action.SET_MINOR, ins, oid, lambda s, pid: s.execute(update(Patient).where(Patient.id == pid).values(is_minor=minor))
    )


def set_representative(rt: Runtime, actor: Actor, ins: str, representative_id: str, registered: bool, *, oid: str | None = None) -> Verdict:
    """Register (or withdraw) `representative_id`, the subject of their tokens, as a legal representative of the patient."""

    def apply(session: Session, patient_id: str) -> None:
        if registered:
            row = {"id": new_id(), "patient_id": patient_id, "actor_id": representative_id, "relation": Relation.REPRESENTATIVE}
            insert_ignore(session, RecordRelation, row)
        else:
            session.execute(
                delete(RecordRelation).where(
                    RecordRelation.patient_id == patient_id, RecordRelation.actor_id == representative_id,
                    RecordRelation.relation == Relation.REPRESENTATIVE,
                )
            )  # fmt: skip

    return _on_record(rt, actor, Action.SET_REPRESENTATIVE, ins, oid, apply)


def _on_record(rt: Runtime, actor: Actor, action: Action, ins: str, oid: str | None, apply: Apply) -> Verdict:
    nir = parse_ins(ins, oid)
    # Asked of no record first: only an actor whom the policy lets do this on any open record goes on (and may make it).
    if not decide(actor, action, Record(NO_PATIENT), None, today=paris_date()).allowed:
        audit(rt, actor, action, NO_PATIENT, None, Decision(False, NOT_FOUND))
        return Refused(NOT_FOUND)
    patient_id = transact(rt.sessions, lambda session: ensure_patient(session, nir).id)
    verdict = check(rt, actor, action, patient_id, now=dt.datetime.now(dt.UTC))
    if isinstance(verdict, Access):
        transact(rt.sessions, lambda session: apply(session, patient_id))
    return verdict
