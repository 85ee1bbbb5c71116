"""Finding a record by INS for the professional's pages.

A stand-in until `pipeline.access.lookup` (POST /v1/records/lookup, issue 16) is merged: the same answer's
shape, decided and audited by the access gate as a record-level `list` attempt, so a record the professional
may not learn of looks exactly like no record.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.access.gate import Refused, check
from pipeline.access.policy import Action, Actor
from pipeline.access.vocabulary import NOT_FOUND
from pipeline.core.identity import is_valid_nir, normalize_nir
from pipeline.index.queries import patient_by_ins
from pipeline.runtime import Runtime

UNKNOWN = "00000000-0000-0000-0000-000000000000"  # audited like any id that names no record


@dataclass(frozen=True)
class Lookup:
    record: str | None
    allowed: bool
    reason: str | None
    attending_physician: bool


def lookup_record(rt: Runtime, actor: Actor, ins: str) -> Lookup | None:
    """The answer for `ins`; None when `ins` is not a valid INS (the page says so, nothing is looked up)."""
    if not is_valid_nir(ins):
        return None
    with rt.sessions() as session:
        patient = patient_by_ins(session, normalize_nir(ins))
        patient_id = patient.id if patient is not None else UNKNOWN
    verdict = check(rt, actor, Action.LIST, patient_id)
    if isinstance(verdict, Refused):
        if verdict.told == NOT_FOUND:
            return Lookup(None, False, None, False)
        return Lookup(patient_id, False, str(verdict.told), False)
    return Lookup(patient_id, True, None, verdict.record.attending_physician == actor.id)
