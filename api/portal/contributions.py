"""The patient's contributions in the portal: their own documents, the medical profile, the emergency contacts.

Each page is the work of the matching API call (api/routes/contributions.py): the same access gate (decide +
audit), the same upload (streamed, the same limits, the same intake through `receive_contribution_form`), the
same validation of the profile and the contacts (the API's models), the same sealed sections.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from api.ingest import batch_work, submit
from api.inputs import BatchIdPath
from api.portal import reading
from api.portal.web import FormDep, PageRefused, PatientDep, ProfessionalDep, Visit, page, redirect
from api.problems import ApiProblem
from api.routes.contributions import EmergencyContacts, MedicalProfile
from api.routes.ingest import _boundary
from pipeline.access.policy import Action
from pipeline.documents.contributed import PATIENT_TYPES, patient_source
from pipeline.index.queries import batch_of_source
from pipeline.index.queries import patient as find_patient
from pipeline.index.states import PatientSection
from pipeline.ingest.contributions import receive_contribution_form
from pipeline.record.sections import read_section, write_section
from pipeline.sources import SourceIdentity
from pipeline.status import batch_status

router = APIRouter(include_in_schema=False)
LIST_FIELDS = ("allergies", "history", "treatments")
CONTACT_ROWS = 3  # blank rows offered beyond the saved contacts (no script adds any)


def sections(visit: Visit, patient_id: str, emergency: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET …/medical-profile and GET …/emergency-contacts: each decided and audited as its API call."""
    reading.allowed(visit, Action.READ_MEDICAL_PROFILE, patient_id, emergency=emergency)
    profile = read_section(visit.rt, patient_id, PatientSection.MEDICAL_PROFILE) or MedicalProfile().model_dump()
    reading.allowed(visit, Action.READ_EMERGENCY_CONTACTS, patient_id, emergency=emergency)
    contacts = read_section(visit.rt, patient_id, PatientSection.EMERGENCY_CONTACTS) or EmergencyContacts().model_dump()
    return profile, contacts


@router.get("/patient/contribute")
def upload_form(visit: PatientDep) -> Response:
    """The form to add a document of one's own (class 90, of a patient type)."""
    reading.allowed(visit, Action.CONTRIBUTE, visit.record)
    return page(visit, "patient/contribute.html", types=PATIENT_TYPES, error=None)


@router.post("/patient/contribute")
async def upload(visit: PatientDep) -> Response:
    """POST /v1/patients/{id}/documents from an HTML form: the CSRF token is checked before the file is stored."""
    request, record = visit.request, visit.record
    await anyio.to_thread.run_sync(partial(reading.allowed, visit, Action.CONTRIBUTE, record))
    ins = await anyio.to_thread.run_sync(_ins, visit, record)

    def admit(token: str) -> bool:
        return secrets.compare_digest(token.encode(), visit.session.csrf.encode())

    try:
        work = batch_work(receive_contribution_form, _boundary(request), record, ins, visit.actor.id, str(visit.actor.kind), admit)
        answer = await submit(request, SourceIdentity(patient_source(record), "patient"), "contributions", None, work)
    except ApiProblem as problem:
        if problem.code == "csrf_failed":
            raise PageRefused("csrf_failed") from None
        return page(visit, "patient/contribute.html", status=problem.status, types=PATIENT_TYPES, error=problem.code)
    batch = answer.headers["location"].rsplit("/", 1)[-1]
    return redirect(f"/patient/contributions/{batch}")


@router.get("/patient/contributions/{batch_id}")
def upload_status(batch_id: BatchIdPath, visit: PatientDep) -> Response:
    """GET /v1/patients/{id}/contributions/{batch}: where the upload stands (refresh the page to follow it)."""
    reading.allowed(visit, Action.CONTRIBUTE, visit.record)
    with visit.rt.sessions() as session:
        if batch_of_source(session, batch_id, patient_source(visit.record)) is None:
            raise PageRefused("not_found")
        status = batch_status(session, batch_id)
    return page(visit, "patient/contribution.html", batch=status)


@router.get("/patient/profile")
def profile(visit: PatientDep) -> Response:
    """The medical profile and the emergency contacts, with the links to edit them."""
    medical, contacts = sections(visit, visit.record)
    done = visit.request.query_params.get("done") == "1"
    return page(visit, "profile.html", profile=medical, contacts=contacts["contacts"], editable=True, done=done)


@router.get("/patient/profile/edit")
def profile_form(visit: PatientDep) -> Response:
    medical, _ = sections(visit, visit.record)
    return page(visit, "patient/profile_form.html", profile=medical, errors=[])


@router.post("/patient/profile")
def save_profile(visit: PatientDep, form: FormDep) -> Response:
    """PUT /v1/patients/{id}/medical-profile: one entry a line in the lists; refused as the API refuses."""
    reading.allowed(visit, Action.CONTRIBUTE, visit.record)
    fields: dict[str, Any] = {name: _lines(form, name) for name in LIST_FIELDS}
    fields["blood_group"] = str(form.get("blood_group", "")) or None
    fields["organ_donation"] = str(form.get("organ_donation", "unstated"))
    try:
        medical = MedicalProfile.model_validate(fields)
    except ValidationError as invalid:
        return page(visit, "patient/profile_form.html", status=422, profile=fields,
                    errors=sorted({name.split(".")[0] for name in _fields_of(invalid)}))  # fmt: skip
    write_section(visit.rt, visit.record, PatientSection.MEDICAL_PROFILE, medical.model_dump())
    return redirect("/patient/profile?done=1")


@router.get("/patient/contacts/edit")
def contacts_form(visit: PatientDep) -> Response:
    _, contacts = sections(visit, visit.record)
    return page(visit, "patient/contacts_form.html", rows=_rows(contacts["contacts"]), errors=[])


@router.post("/patient/contacts")
def save_contacts(visit: PatientDep, form: FormDep) -> Response:
    """PUT /v1/patients/{id}/emergency-contacts: the rows filled in, in order (a row left blank is dropped)."""
    reading.allowed(visit, Action.CONTRIBUTE, visit.record)
    rows = [{key: str(form.get(f"{key}_{n}", "")).strip() for key in ("name", "relation", "phone")} for n in range(_row_count(form))]
    filled = [row for row in rows if any(row.values())]
    try:
        contacts = EmergencyContacts.model_validate({"contacts": filled})
    except ValidationError as invalid:
        return page(visit, "patient/contacts_form.html", status=422, rows=_rows(filled), errors=_fields_of(invalid))
    write_section(visit.rt, visit.record, PatientSection.EMERGENCY_CONTACTS, contacts.model_dump())
    return redirect("/patient/profile?done=1")


@router.get("/pro/records/{patient_id}/profile")
def profile_for_professional(patient_id: str, visit: ProfessionalDep) -> Response:
    """Read only, to a professional the policy lets read the record's class-90 documents (break-glass included)."""
    medical, contacts = sections(visit, patient_id, visit.session.emergency_reason(patient_id))
    return page(visit, "profile.html", profile=medical, contacts=contacts["contacts"], editable=False, done=False, patient_id=patient_id)


def _ins(visit: Visit, patient_id: str) -> str:
    with visit.rt.sessions() as session:
        patient = find_patient(session, patient_id)
    assert patient is not None  # the gate refused otherwise
    return patient.ins


def _lines(form: FormData, name: str) -> list[str]:
    return [line.strip() for line in str(form.get(name, "")).splitlines() if line.strip()]


def _row_count(form: FormData) -> int:
    count = str(form.get("rows", "0"))
    return min(int(count), 10 + CONTACT_ROWS) if count.isdigit() else 0


def _rows(contacts: list[dict[str, str]]) -> list[dict[str, str]]:
    return [*contacts, *({"name": "", "relation": "", "phone": ""} for _ in range(CONTACT_ROWS))][: 10 + CONTACT_ROWS]


def _fields_of(invalid: ValidationError) -> list[str]:
    """The fields refused, by name (`contacts.0.phone`), for the form to point at."""
    return sorted({".".join(str(part) for part in error["loc"]) for error in invalid.errors()})
