"""Finding a record by the patient's INS (docs/domain.md, "Finding a record, and the care team over time").

One answer says whether a record exists and is open, whether this actor may read it (and why not), and
whether they are its attending physician. To an actor who may not learn that the record exists (the
policy's `knows_of_record`: rule 6's parties, administrative staff, an occupational physician without
consent, the operator, another patient…) the answer is `UNKNOWN`, the very answer for an INS with no record.

Every lookup is audited in the record's chain (so the patient reads it in their access log), or in the "-"
chain when there is no record or the INS is malformed; no raw INS is ever written to the audit. A lookup
tells the patient nothing by notification: it reads nothing of the record, and a professional's first access
is told when they first read it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pipeline.access.audit import NO_PATIENT, AuditEvent, append
from pipeline.access.gate import APPEND_RETRIES
from pipeline.access.policy import Action, Actor, Decision, decide, is_attending, knows_of_record
from pipeline.access.recordview import load_record, patient_id_for_ins
from pipeline.access.vocabulary import NOT_FOUND
from pipeline.core.clock import paris_date
from pipeline.core.identity import InsError, parse_ins
from pipeline.index.db import transact
from pipeline.runtime import Runtime

__all__ = ["UNKNOWN", "InsError", "LookupAnswer", "lookup_record"]


@dataclass(frozen=True)
class LookupAnswer:
    """The public answer (`POST /v1/records/lookup`): `reason` is None when `allowed`."""

    record: str | None
    status: str | None  # open | closed | opposed
    allowed: bool
    reason: str | None
    attending_physician: bool


# No record, or one this actor may not learn of: the same answer, field for field.
UNKNOWN = LookupAnswer(record=None, status=None, allowed=False, reason=NOT_FOUND, attending_physician=False)


def lookup_record(rt: Runtime, actor: Actor, ins: str, *, oid: str | None = None, now: dt.datetime | None = None) -> LookupAnswer:
    """Look the record of `ins` (given under `oid`, the NIR's by default) up for `actor`, and audit the lookup.

    Raises InsError for a malformed INS or an OID the domain does not list (audited in the "-" chain first).
    """
    moment = now or dt.datetime.now(dt.UTC)
    try:
        nir = parse_ins(ins, oid)
    except InsError as error:
        _audit_only(rt, actor, NO_PATIENT, Decision(False, NOT_FOUND), error.code)
        raise

    def work(session: Session) -> LookupAnswer:
        patient_id = patient_id_for_ins(session, nir)
        record = load_record(session, patient_id, now=moment, for_actor=actor.id) if patient_id is not None else None
        if record is None:
            _append(rt, session, actor, NO_PATIENT, Decision(False, NOT_FOUND), None)
            return UNKNOWN
        decision = decide(actor, Action.LOOKUP, record, None, today=paris_date(moment))
        if not knows_of_record(actor, record):
            _append(rt, session, actor, record.patient_id, decision, NOT_FOUND)
            return UNKNOWN
        _append(rt, session, actor, record.patient_id, decision, None)
        reason = None if decision.allowed else str(decision.reason)
        return LookupAnswer(record.patient_id, str(record.status), decision.allowed, reason, is_attending(actor, record))

    return transact(rt.sessions, work, retries=APPEND_RETRIES)


def _append(rt: Runtime, session: Session, actor: Actor, chain: str, decision: Decision, told: str | None) -> None:
    event = AuditEvent(
        chain=chain,
        actor_id=actor.id,
        actor_kind=actor.kind,
        profession=actor.profession,
        action=Action.LOOKUP,
        document_id=None,
        outcome="allowed" if decision.allowed else "denied",
        reason=decision.reason,
        told_reason=told if told != decision.reason else None,
    )
    append(session, rt.audit_key, event)


def _audit_only(rt: Runtime, actor: Actor, chain: str, decision: Decision, told: str) -> None:
    transact(rt.sessions, lambda session: _append(rt, session, actor, chain, decision, told), retries=APPEND_RETRIES)
