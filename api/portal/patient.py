"""The patient's pages: home, documents (filters, paging), a document, care history, access log."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.portal import reading
from api.portal.labels import CLASS_LABELS
from api.portal.web import PatientDep, page
from pipeline.access.listing import DocumentFilters
from pipeline.access.policy import Action
from pipeline.carehistory.history import care_history

router = APIRouter(prefix="/patient", include_in_schema=False)
HOME_ITEMS = 5
LOG_PAGE = 50


@router.get("")
def home(visit: PatientDep) -> Response:
    """The latest documents and the latest accesses to the record."""
    me = visit.record
    latest = reading.list_documents(visit, me, DocumentFilters(), 1, HOME_ITEMS)
    accesses = reading.read_log(visit, me, HOME_ITEMS, others_only=True)  # who else came: not the visitor's own views
    return page(visit, "patient/home.html", listing=latest, log=accesses, classes=CLASS_LABELS)


@router.get("/documents")
def documents(visit: PatientDep) -> Response:
    filters, number = reading.filters_of(visit.request)
    listing = reading.list_documents(visit, visit.record, filters, number)
    return page(visit, "patient/documents.html", listing=listing, filters=filters, classes=CLASS_LABELS, base="/patient/documents")


@router.get("/documents/{document_id}")
def document(document_id: str, visit: PatientDep) -> Response:
    shown = reading.show_document(visit, visit.record, document_id)
    return page(visit, "document.html", shown=shown, classes=CLASS_LABELS, base="/patient/documents", patient_view=True)


@router.get("/documents/{document_id}/history")
def history(document_id: str, visit: PatientDep) -> Response:
    """The document's versions (GET …/documents/{id}/history); a superseded one opens as any document."""
    versions = reading.history(visit, visit.record, document_id)
    return page(visit, "history.html", listing=versions, document_id=document_id, base="/patient/documents")


@router.get("/documents/{document_id}/content")
def content(document_id: str, visit: PatientDep) -> Response:
    return reading.document_content(visit, visit.record, document_id)


@router.get("/care")
def care(visit: PatientDep) -> Response:
    """The 24-month care history (GET /v1/patients/{id}/care-history)."""
    _, number = reading.filters_of(visit.request)
    me = visit.record
    reading.allowed(visit, Action.READ_CARE_HISTORY, me)
    with visit.rt.sessions() as session:
        history = care_history(session, me, page=number, page_size=reading.PAGE_SIZE, record_keys=visit.rt.record_keys)
    pages = max(1, -(-history.total // reading.PAGE_SIZE))
    return page(visit, "patient/care.html", history=history, pages=pages)


@router.get("/access-log")
def access_log(visit: PatientDep) -> Response:
    """Who read or did what on the record; emergency accesses stand out."""
    _, number = reading.filters_of(visit.request)
    lines = reading.read_log(visit, visit.record, LOG_PAGE + 1, (number - 1) * LOG_PAGE)
    return page(visit, "access_log.html", lines=lines[:LOG_PAGE], number=number, more=len(lines) > LOG_PAGE)
