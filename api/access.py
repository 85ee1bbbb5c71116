"""The access gate (pipeline/access/gate.py) in HTTP terms: a refusal becomes its problem document.

A refusal the actor may be told is `403` with the policy's reason as its `code`; anything else (no such
record or document, or one the actor may not learn exists) is the single `404 not_found`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from api.problems import ApiProblem, not_found
from pipeline.access.accesslog import LogLine, access_log
from pipeline.access.audit import ReadBeside
from pipeline.access.gate import Access, Meanwhile, Refused, visible
from pipeline.access.gate import check as gate_check
from pipeline.access.policy import Action, Actor, Reason
from pipeline.access.vocabulary import NOT_FOUND, NotFound
from pipeline.runtime import Runtime

__all__ = ["Access", "LogLine", "access_log", "check", "forbidden", "problem", "visible"]


def check(
    rt: Runtime,
    actor: Actor,
    action: Action | str,
    patient_id: str,
    *,
    document_id: str | None = None,
    emergency_reason: str | None = None,
    today: dt.date | None = None,
    reads: Session | None = None,
    beside: ReadBeside | None = None,
    meanwhile: Meanwhile | None = None,
) -> Access:
    """Decide and audit one attempt; raise the problem to answer when it is refused. `reads`, `beside`, `meanwhile`: see
    `pipeline.access.gate.check`."""
    verdict = gate_check(
        rt,
        actor,
        action,
        patient_id,
        document_id=document_id,
        emergency_reason=emergency_reason,
        today=today,
        reads=reads,
        beside=beside,
        meanwhile=meanwhile,
    )
    if isinstance(verdict, Refused):
        raise problem(verdict.told)
    return verdict


def problem(told: Reason | NotFound) -> ApiProblem:
    """What a refused actor is answered: 404 when they may not learn the thing exists, else 403 and the reason."""
    return not_found() if told == NOT_FOUND else forbidden(told)


def forbidden(reason: str) -> ApiProblem:
    return ApiProblem(403, str(reason), "Forbidden", f"Access denied: {reason}.")
