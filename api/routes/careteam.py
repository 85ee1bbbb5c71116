"""The care team over time, and the record's own state: declared consent, facilities authorized for a stay, the
attending physician's handover, the patient's opposition and express consent to an occupational physician.

Each route asks the access gate (`api.access.check`: decided by the policy, audited) and then writes through
`pipeline.access.careteam`; nothing here decides who may do what.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.access import check
from api.deps import ActorDep, RuntimeDep
from api.inputs import ActorIdField, ActorIdPath, StrictBody, UntilField
from api.problems import PROBLEM_RESPONSES, ApiProblem
from pipeline.access import careteam
from pipeline.access.membership import FINESS_PATTERN
from pipeline.access.policy import Action

router = APIRouter(prefix="/v1/patients/{patient_id}", tags=["care team"], responses=PROBLEM_RESPONSES)

FinessPath = Annotated[str, Path(pattern=FINESS_PATTERN, description="The facility's FINESS number (9 characters).")]
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "`no_transfer_pending`, `not_in_care_team`: no handover."}}


class Done(BaseModel):
    ok: bool = True


class ConsentIn(StrictBody):
    until: UntilField | None = None


class FacilityIn(StrictBody):
    until: UntilField


class TransferIn(StrictBody):
    physician_id: ActorIdField


class RecordOppositionIn(StrictBody):
    opposed: bool


class OccupationalConsentIn(StrictBody):
    consent: bool


class TeamMember(BaseModel):
    actor_id: str = Field(description="A professional's id (RPPS), or a facility's FINESS for `facility`.")
    relation: str = Field(description="authorized, blocked, declared_consent, facility, occupational_consent or attending_proposal.")
    since: dt.datetime
    until: dt.datetime | None
    granted_by: str | None = Field(description="Who set it when not the patient: the declaring professional, the proposing physician.")
    in_force: bool


class CareTeamOut(BaseModel):
    members: list[TeamMember]
    authors: list[str] = Field(description="Professionals who authored a document of the record: in the care team unless blocked.")


@router.post("/consent", response_model=Done)
def declare_consent(patient_id: str, body: ConsentIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """A professional declares that the patient, present, consents to their access (until `until`, or until the patient
    revokes it). Audited as `declare_consent` in the patient's access log."""
    check(rt, actor, Action.DECLARE_CONSENT, patient_id)
    careteam.declare_consent(rt, patient_id, actor.id, body.until)
    return Done()


@router.delete("/consents/{professional_id}", response_model=Done)
def revoke_consent(patient_id: str, professional_id: ActorIdPath, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The patient revokes the consent a professional declared."""
    check(rt, actor, Action.REVOKE_CONSENT, patient_id)
    careteam.revoke_consent(rt, patient_id, professional_id)
    return Done()


@router.put("/facilities/{finess}", response_model=Done)
def authorize_facility(patient_id: str, finess: FinessPath, body: FacilityIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Authorize a facility's professionals (their token's `facility`: the FINESS, or `kind:FINESS`) for a stay ending at `until`."""
    check(rt, actor, Action.AUTHORIZE_FACILITY, patient_id)
    careteam.authorize_facility(rt, patient_id, finess, body.until)
    return Done()


@router.delete("/facilities/{finess}", response_model=Done)
def revoke_facility(patient_id: str, finess: FinessPath, rt: RuntimeDep, actor: ActorDep) -> Done:
    check(rt, actor, Action.REVOKE_FACILITY, patient_id)
    careteam.revoke_facility(rt, patient_id, finess)
    return Done()


@router.get("/care-team", response_model=CareTeamOut)
def read_care_team(patient_id: str, rt: RuntimeDep, actor: ActorDep) -> CareTeamOut:
    """Who is in the care team and on what ground (and who is blocked): the patient's and their representatives'."""
    check(rt, actor, Action.READ_CARE_TEAM, patient_id)
    team = careteam.care_team(rt, patient_id)
    members = [TeamMember(actor_id=r.actor_id, relation=r.relation, since=r.since, until=r.until, granted_by=r.granted_by,
                          in_force=r.in_force) for r in team.rows]  # fmt: skip
    return CareTeamOut(members=members, authors=team.authors)


@router.post("/attending-physician/transfer", response_model=Done, responses=CONFLICT)
def propose_transfer(patient_id: str, body: TransferIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The attending physician names a successor already in the care team; the patient's agreement completes it."""
    check(rt, actor, Action.PROPOSE_ATTENDING_TRANSFER, patient_id)
    try:
        careteam.propose_transfer(rt, patient_id, actor.id, body.physician_id)
    except careteam.TransferError as error:
        raise ApiProblem(409, error.code, "Conflict", str(error)) from None
    return Done()


class TransferOut(BaseModel):
    attending_physician: str


@router.post("/attending-physician/transfer/accept", response_model=TransferOut, responses=CONFLICT)
def accept_transfer(patient_id: str, rt: RuntimeDep, actor: ActorDep) -> TransferOut:
    """The patient agrees to the pending handover: the named successor becomes the attending physician."""
    check(rt, actor, Action.ACCEPT_ATTENDING_TRANSFER, patient_id)
    try:
        return TransferOut(attending_physician=careteam.accept_transfer(rt, patient_id))
    except careteam.TransferError as error:
        raise ApiProblem(409, error.code, "Conflict", str(error)) from None


@router.put("/opposition", response_model=Done)
def set_record_opposition(patient_id: str, body: RecordOppositionIn, rt: RuntimeDep, actor: ActorDep) -> Done:
    """Oppose the record (no deposit accepted, nobody reads it, its content kept sealed) or lift the opposition."""
    check(rt, actor, Action.OPPOSE_RECORD if body.opposed else Action.LIFT_OPPOSITION, patient_id)
    careteam.set_record_opposition(rt, patient_id, body.opposed)
    return Done()


@router.put("/occupational-physicians/{physician_id}/consent", response_model=Done)
def set_occupational_consent(
    patient_id: str, physician_id: ActorIdPath, body: OccupationalConsentIn, rt: RuntimeDep, actor: ActorDep
) -> Done:
    """The patient's express consent to this occupational physician (given or withdrawn): without it they read nothing."""
    check(rt, actor, Action.SET_OCCUPATIONAL_CONSENT, patient_id)
    careteam.set_occupational_consent(rt, patient_id, physician_id, body.consent)
    return Done()
