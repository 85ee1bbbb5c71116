"""A legal representative chooses whose record the patient's pages show (one of the records they represent)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.portal.sessions import save
from api.portal.web import FormDep, PageRefused, RepresentativeDep, page, redirect
from pipeline.access.representatives import represented_records

router = APIRouter(prefix="/patient/records", include_in_schema=False)


@router.get("")
def choose(visit: RepresentativeDep) -> Response:
    with visit.rt.sessions() as session:
        records = represented_records(session, visit.actor.id)
    return page(visit, "patient/records.html", records=records, current=visit.session.record)


@router.post("")
def chosen(visit: RepresentativeDep, form: FormDep) -> Response:
    """Only a record they are registered for; the policy still decides every read of it."""
    with visit.rt.sessions() as session:
        mine = {patient_id for patient_id, _ in represented_records(session, visit.actor.id)}
    record = str(form.get("record", ""))
    if record not in mine:
        raise PageRefused("not_found")
    visit.session.record = record
    save(visit.request, visit.session)
    return redirect("/patient")
