"""Records by the patient's INS: a professional's lookup (`POST /v1/records/lookup`), and the operator's minor
status and legal representatives (`PUT /v1/records/minor`, `PUT /v1/records/representatives`). The INS travels in
the body, never in a URL (URLs are logged)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.access import problem
from api.deps import ActorDep, RuntimeDep
from api.inputs import ActorIdField, StrictBody
from api.problems import PROBLEM_RESPONSES, ApiProblem
from pipeline.access import operator
from pipeline.access.gate import Refused, Verdict
from pipeline.access.lookup import InsError, lookup_record

router = APIRouter(prefix="/v1/records", tags=["records"], responses=PROBLEM_RESPONSES)


# The OIDs the domain lists (pipeline.core.identity.INS_OIDS), declared in the OpenAPI document.
InsOid = Literal["1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10"]


class InsIn(StrictBody):
    ins: str = Field(max_length=32, description="The patient's INS matricule (NIR, 15 characters; spaces allowed).")
    oid: InsOid | None = Field(default=None, description="The INS's OID: 1.2.250.1.213.1.4.8 (NIR, the default), .9 (NIA) or .10 (test).")


class LookupIn(InsIn):
    pass


class MinorIn(InsIn):
    minor: bool


class RepresentativeIn(InsIn):
    representative_id: ActorIdField = Field(description="The representative's id: the subject of their tokens.")
    registered: bool = Field(description="true registers them, false withdraws them.")


class Done(BaseModel):
    ok: bool = True


INS_ERRORS: dict[int | str, dict[str, Any]] = {422: {"description": "`invalid_ins` or `unknown_ins_oid`."}}


class LookupAccess(BaseModel):
    allowed: bool
    reason: str | None = Field(
        description="Why not: a policy reason code, or `not_found` when there is no record to tell of; null when allowed."
    )


class LookupOut(BaseModel):
    record: str | None = Field(description="The record's id, for the /v1/patients/{id}/… routes; null when none (or not to be told).")
    status: str | None = Field(description="open, closed or opposed; null when there is no record to tell of.")
    access: LookupAccess
    attending_physician: bool


@router.post("/lookup", response_model=LookupOut, responses=INS_ERRORS)
def lookup(body: LookupIn, rt: RuntimeDep, actor: ActorDep) -> LookupOut:
    """Whether the patient of this INS has a record, whether it is open, whether you may read it (and why not),
    and whether you are their attending physician. Audited. To an actor who may not learn that a record exists,
    the same answer whether it does or not."""
    try:
        answer = lookup_record(rt, actor, body.ins, oid=body.oid)
    except InsError as error:
        raise _unprocessable(error) from None
    return LookupOut(
        record=answer.record,
        status=answer.status,
        access=LookupAccess(allowed=answer.allowed, reason=answer.reason),
        attending_physician=answer.attending_physician,
    )


def _unprocessable(error: InsError) -> ApiProblem:
    return ApiProblem(422, error.code, "Unprocessable INS", str(error))


def _done(verdict: Verdict) -> Done:
    if isinstance(verdict, Refused):
        raise problem(verdict.told)
    return Done()


@router.put("/minor", response_model=Done, responses=INS_ERRORS)
def set_minor(body: MinorIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The operator sets whether the patient is a minor (from civil-status documents); the record is made if there is
    none yet. Anyone else: 404, as for a record that does not exist. Audited."""
    try:
        return _done(operator.set_minor(rt, actor, body.ins, body.minor, oid=body.oid))
    except InsError as error:
        raise _unprocessable(error) from None


@router.put("/representatives", response_model=Done, responses=INS_ERRORS)
def set_representative(body: RepresentativeIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The operator registers (or withdraws) a legal representative of the patient (from civil-status or court
    documents); the record is made if there is none yet. Anyone else: 404. Audited in the patient's access log."""
    try:
        return _done(operator.set_representative(rt, actor, body.ins, body.representative_id, body.registered, oid=body.oid))
    except InsError as error:
        raise _unprocessable(error) from None
