"""Records by the patient's INS: a professional's lookup (`POST /v1/records/lookup`)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ActorDep, RuntimeDep
from api.inputs import StrictBody
from api.problems import PROBLEM_RESPONSES, ApiProblem
from pipeline.access.lookup import InsError, lookup_record

router = APIRouter(prefix="/v1/records", tags=["records"], responses=PROBLEM_RESPONSES)


class LookupIn(StrictBody):
    ins: str = Field(max_length=32, description="The patient's INS matricule (NIR, 15 characters; spaces allowed).")
    oid: str | None = Field(
        default=None, max_length=64, description="The INS's OID: 1.2.250.1.213.1.4.8 (NIR, the default), .9 (NIA) or .10 (test)."
    )


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


@router.post("/lookup", response_model=LookupOut, responses={422: {"description": "`invalid_ins` or `unknown_ins_oid`."}})
def lookup(body: LookupIn, rt: RuntimeDep, actor: ActorDep) -> LookupOut:
    """Whether the patient of this INS has a record, whether it is open, whether you may read it (and why not),
    and whether you are their attending physician. Audited. To an actor who may not learn that a record exists,
    the same answer whether it does or not."""
    try:
        answer = lookup_record(rt, actor, body.ins, oid=body.oid)
    except InsError as error:
        raise ApiProblem(422, error.code, "Unprocessable INS", str(error)) from None
    return LookupOut(
        record=answer.record,
        status=answer.status,
        access=LookupAccess(allowed=answer.allowed, reason=answer.reason),
        attending_physician=answer.attending_physician,
    )
