"""The professional's pages: find a record by INS, the documents the policy allows, a document, break-glass, the log."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import Response

from api.portal import reading
from api.portal.labels import CLASS_LABELS
from api.portal.sessions import EMERGENCY_SECONDS, save
from api.portal.web import FormDep, PageRefused, ProfessionalDep, Visit, page, redirect
from pipeline.access import careteam
from pipeline.access.audit import MAX_JUSTIFICATION
from pipeline.access.lookup import InsError, lookup_record
from pipeline.access.policy import Action
from pipeline.access.vocabulary import Reason

router = APIRouter(prefix="/pro", include_in_schema=False)
# Denials break-glass can lift (a missing authorization), so the page offers it; never a block, an opposition or a
# closed record (pipeline/access/policy.py `_emergency`).
GLASS_BREAKABLE = frozenset({Reason.NOT_IN_CARE_TEAM, Reason.NO_CONSENT})


@router.get("")
def search(visit: ProfessionalDep) -> Response:
    return page(visit, "pro/search.html", answer=None, ins="", invalid=False)


@router.post("/lookup")
def lookup(visit: ProfessionalDep, form: FormDep) -> Response:
    """Find a record by INS (POST /v1/records/lookup); traced whatever the answer."""
    ins = str(form.get("ins", "")).strip()[:32]
    try:
        answer = lookup_record(visit.rt, visit.actor, ins)
    except InsError:
        return page(visit, "pro/search.html", status=422, answer=None, ins=ins, invalid=True)
    return page(visit, "pro/search.html", answer=answer, ins=ins, invalid=False)


def _emergency(visit: Visit, patient_id: str) -> str | None:
    return visit.session.emergency_reason(patient_id)


@router.get("/records/{patient_id}")
def record(patient_id: str, visit: ProfessionalDep) -> Response:
    """The documents the policy lets this professional see; refused with a reason it may tell, the offer of break-glass."""
    filters, number = reading.filters_of(visit.request)
    emergency = _emergency(visit, patient_id)
    try:
        listing = reading.list_documents(visit, patient_id, filters, number, emergency=emergency)
    except PageRefused as refusal:
        if refusal.status == 404:
            raise
        return page(visit, "pro/record.html", status=403, patient_id=patient_id, listing=None, told=refusal.told,
                    breakable=refusal.told in GLASS_BREAKABLE, emergency=None, filters=filters, classes=CLASS_LABELS)  # fmt: skip
    return page(visit, "pro/record.html", patient_id=patient_id, listing=listing, told=None, breakable=True, emergency=emergency,
                filters=filters, classes=CLASS_LABELS, base=f"/pro/records/{patient_id}")  # fmt: skip


@router.get("/records/{patient_id}/documents/{document_id}")
def document(patient_id: str, document_id: str, visit: ProfessionalDep) -> Response:
    shown = reading.show_document(visit, patient_id, document_id, _emergency(visit, patient_id))
    base = f"/pro/records/{patient_id}/documents"
    return page(visit, "document.html", shown=shown, classes=CLASS_LABELS, base=base, patient_view=False, patient_id=patient_id)


@router.get("/records/{patient_id}/documents/{document_id}/history")
def history(patient_id: str, document_id: str, visit: ProfessionalDep) -> Response:
    """The versions of the document this professional may see (GET …/documents/{id}/history)."""
    versions = reading.history(visit, patient_id, document_id, _emergency(visit, patient_id))
    base = f"/pro/records/{patient_id}/documents"
    return page(visit, "history.html", listing=versions, document_id=document_id, base=base, patient_id=patient_id)


@router.get("/records/{patient_id}/documents/{document_id}/content")
def content(patient_id: str, document_id: str, visit: ProfessionalDep) -> Response:
    return reading.document_content(visit, patient_id, document_id, _emergency(visit, patient_id))


@router.get("/records/{patient_id}/emergency")
def emergency_form(patient_id: str, visit: ProfessionalDep) -> Response:
    """Break-glass: the explicit warning and the mandatory reason."""
    return page(visit, "pro/emergency.html", patient_id=patient_id, error=False, limit=MAX_JUSTIFICATION)


@router.post("/records/{patient_id}/emergency")
def emergency(patient_id: str, visit: ProfessionalDep, form: FormDep) -> Response:
    """Keep the reason for this record's reads (EMERGENCY_SECONDS), each then audited as an emergency override."""
    reason = " ".join(str(form.get("reason", "")).split())
    if not reason or len(reason) > MAX_JUSTIFICATION:
        return page(visit, "pro/emergency.html", status=422, patient_id=patient_id, error=True, limit=MAX_JUSTIFICATION)
    visit.session.emergency[patient_id] = (reason, time.time() + EMERGENCY_SECONDS)
    save(visit.request, visit.session)
    return redirect(f"/pro/records/{patient_id}")


@router.post("/records/{patient_id}/consent")
def declare_consent(patient_id: str, visit: ProfessionalDep, form: FormDep) -> Response:
    """POST …/consent: the patient, present, consents to this professional's access (traced, shown to the patient,
    who can revoke it); the policy decides whether this professional may declare it (never one the patient blocked)."""
    reading.allowed(visit, Action.DECLARE_CONSENT, patient_id)
    careteam.declare_consent(visit.rt, patient_id, visit.actor.id)
    return redirect(f"/pro/records/{patient_id}")


@router.get("/records/{patient_id}/access-log")
def access_log(patient_id: str, visit: ProfessionalDep) -> Response:
    """GET /v1/patients/{id}/access-log: all of it for the attending physician, their own entries for others."""
    _, number = reading.filters_of(visit.request)
    lines = reading.read_log(visit, patient_id, 51, (number - 1) * 50)
    return page(visit, "access_log.html", lines=lines[:50], number=number, more=len(lines) > 50, patient_id=patient_id)
