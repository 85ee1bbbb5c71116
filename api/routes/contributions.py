"""What the patient adds to their record: their own documents, the medical profile, the emergency contacts.

A document goes through the same intake, validation, classification (class 90), encryption and index as a
source's (pipeline/ingest/contributions.py). The profile and the contacts are structured data sealed under
the record key (pipeline/record/sections.py), read under the policy as a class-90 document.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.access import check
from api.deps import ActorDep, EmergencyDep, RuntimeDep
from api.ingest import batch_work, submit
from api.inputs import BatchIdPath, StrictBody
from api.problems import PROBLEM_RESPONSES, not_found
from api.routes.ingest import DOCUMENT_BODY, INGEST_PROBLEMS, IdempotencyKey, _body, _boundary
from pipeline.access.policy import Action, Actor
from pipeline.documents.contributed import PATIENT_TYPES, patient_source
from pipeline.index.queries import batch_of_source
from pipeline.index.queries import patient as find_patient
from pipeline.index.states import PatientSection
from pipeline.ingest.contributions import CONTRIBUTION_FIELDS, receive_contribution
from pipeline.record.sections import read_section, write_section
from pipeline.runtime import Runtime
from pipeline.sources import SourceIdentity
from pipeline.status import batch_status

router = APIRouter(prefix="/v1/patients/{patient_id}", tags=["contributions"], responses=PROBLEM_RESPONSES)
CONTRIBUTION_STATUS = "/v1/patients/{}/contributions/{}"
_METADATA = {
    "type": "string",
    "description": f"JSON object: {', '.join(CONTRIBUTION_FIELDS)}; title and document_type ({', '.join(PATIENT_TYPES)}) required",
}
# As a source's submission, but authenticated and refused as any record route.
UPLOAD_PROBLEMS = {**INGEST_PROBLEMS, 401: PROBLEM_RESPONSES[401], 403: PROBLEM_RESPONSES[403], 404: PROBLEM_RESPONSES[404]}
CONTRIBUTION_BODY = DOCUMENT_BODY | {"properties": {"metadata": _METADATA, "file": {"type": "string", "format": "binary"}}}


class ContributionAccepted(BaseModel):
    batch: str
    status_url: str
    total: int
    resumed: bool


def _ins(rt: Runtime, patient_id: str) -> str:
    with rt.sessions() as session:
        patient = find_patient(session, patient_id)
    assert patient is not None  # the gate answered 404 otherwise
    return patient.ins


@router.post(
    "/documents",
    status_code=202,
    response_model=ContributionAccepted,
    responses=UPLOAD_PROBLEMS,
    openapi_extra=_body({"multipart/form-data": CONTRIBUTION_BODY}),
)
async def add_document(
    patient_id: str, request: Request, rt: RuntimeDep, actor: ActorDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """The patient (or their legal representative) adds a document of their own: multipart, a `metadata` part and a
    `file` part. Class 90, of the declared type (EXPPAT_3: advance directives); checked, encrypted and indexed as
    any deposit. 202 with the status URL of the upload."""
    await anyio.to_thread.run_sync(partial(check, rt, actor, Action.CONTRIBUTE, patient_id))
    ins = await anyio.to_thread.run_sync(_ins, rt, patient_id)
    deposit = batch_work(receive_contribution, _boundary(request), patient_id, ins, actor.id, str(actor.kind))

    def work(runtime: Runtime, body: Any, wiring: Any) -> dict[str, Any]:
        answer = deposit(runtime, body, wiring)
        return answer | {"status_url": CONTRIBUTION_STATUS.format(patient_id, answer["batch"])}

    return await submit(request, SourceIdentity(patient_source(patient_id), "patient"), "contributions", idempotency_key, work)


@router.get("/contributions/{batch_id}")
def contribution_status(patient_id: str, batch_id: BatchIdPath, rt: RuntimeDep, actor: ActorDep) -> dict[str, Any]:
    """Where an upload of the patient's stands: per document, its state, and why it was rejected if it was."""
    check(rt, actor, Action.CONTRIBUTE, patient_id)
    with rt.sessions() as session:
        if batch_of_source(session, batch_id, patient_source(patient_id)) is None:
            raise not_found()
        return batch_status(session, batch_id)


Entry = Annotated[str, Field(min_length=1, max_length=200)]
BloodGroup = Literal["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"]


class MedicalProfile(StrictBody):
    """The patient's own account: allergies, history, treatments, blood group, organ-donation wish."""

    allergies: list[Entry] = Field(default_factory=list, max_length=50)
    history: list[Entry] = Field(default_factory=list, max_length=50)
    treatments: list[Entry] = Field(default_factory=list, max_length=50)
    blood_group: BloodGroup | None = None
    organ_donation: Literal["yes", "no", "unstated"] = "unstated"


class EmergencyContact(StrictBody):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    relation: Annotated[str, Field(min_length=1, max_length=60)]
    phone: Annotated[str, Field(max_length=16, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")]


class EmergencyContacts(StrictBody):
    """The people to call."""

    contacts: list[EmergencyContact] = Field(default_factory=list, max_length=10)


class Done(BaseModel):
    ok: bool = True


def _section(rt: Runtime, actor: Actor, patient_id: str, emergency: str | None, action: Action, kind: PatientSection) -> dict[str, Any]:
    check(rt, actor, action, patient_id, emergency_reason=emergency)
    return read_section(rt, patient_id, kind) or {}


@router.get("/medical-profile", response_model=MedicalProfile)
def read_medical_profile(patient_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> dict[str, Any]:
    """The medical profile, to whom the policy lets read a class-90 document of the record (break-glass included)."""
    return _section(rt, actor, patient_id, emergency, Action.READ_MEDICAL_PROFILE, PatientSection.MEDICAL_PROFILE)


@router.put("/medical-profile", response_model=Done)
def write_medical_profile(patient_id: str, body: MedicalProfile, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The patient (or their legal representative) writes the medical profile, replacing the previous one."""
    check(rt, actor, Action.CONTRIBUTE, patient_id)
    write_section(rt, patient_id, PatientSection.MEDICAL_PROFILE, body.model_dump())
    return Done()


@router.get("/emergency-contacts", response_model=EmergencyContacts)
def read_emergency_contacts(patient_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> dict[str, Any]:
    """The people to call, to whom the policy lets read a class-90 document of the record (break-glass included)."""
    return _section(rt, actor, patient_id, emergency, Action.READ_EMERGENCY_CONTACTS, PatientSection.EMERGENCY_CONTACTS)


@router.put("/emergency-contacts", response_model=Done)
def write_emergency_contacts(patient_id: str, body: EmergencyContacts, rt: RuntimeDep, actor: ActorDep) -> Done:
    """The patient (or their legal representative) sets the people to call, replacing the previous list."""
    check(rt, actor, Action.CONTRIBUTE, patient_id)
    write_section(rt, patient_id, PatientSection.EMERGENCY_CONTACTS, body.model_dump())
    return Done()
