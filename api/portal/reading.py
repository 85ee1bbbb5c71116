"""Reading a record through the portal, as the JSON routes do: the access gate (decide + audit), then the feature.

Each function here is one API call's work (named beside it), so a page view leaves the same audit entries
as the calls it mirrors.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from api.headers import EXTENSIONS, content_headers, served_type
from api.portal.cda import CdaView, render_cda
from api.portal.web import PageRefused, Visit
from pipeline.access.accesslog import LogLine, access_log
from pipeline.access.gate import Access, Decisions, Refused, check, visible
from pipeline.access.listing import DocumentFilters, VisiblePage, visible_page
from pipeline.access.policy import Action
from pipeline.core.clock import paris_date
from pipeline.documents import versions
from pipeline.documents.stored import DocumentGone, read_document
from pipeline.documents.titles import document_titles
from pipeline.index.models import Document

PAGE_SIZE = 20
SHOWN_INLINE = 1 << 20  # text and CDA documents up to this size are shown in the page, larger ones downloaded
CODE = re.compile(r"[A-Za-z0-9._-]{1,32}")
# A PDF is shown in a frame of the page: the browser's viewer, under a policy that lets only this origin frame it.
PDF_POLICY = "default-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"


def allowed(visit: Visit, action: Action, patient_id: str, document_id: str | None = None, emergency: str | None = None) -> Access:
    """Decide and audit one attempt (pipeline.access.gate.check, as api/access.py); a refusal page otherwise."""
    verdict = check(visit.rt, visit.actor, action, patient_id, document_id=document_id, emergency_reason=emergency)
    if isinstance(verdict, Refused):
        raise PageRefused(verdict.told)
    return verdict


@dataclass(frozen=True)
class Listing:
    page: VisiblePage
    titles: dict[str, str | None]
    number: int
    pages: int


def list_documents(
    visit: Visit, patient_id: str, filters: DocumentFilters, number: int, size: int | None = None, emergency: str | None = None
) -> Listing:
    """GET /v1/patients/{id}/documents."""
    size = size or PAGE_SIZE
    action = Action.EMERGENCY_READ if emergency else Action.LIST
    access = allowed(visit, action, patient_id, emergency=emergency)
    decisions = Decisions(visit.actor, action, access.record, today=paris_date(), emergency_reason=emergency)
    with visit.rt.sessions() as session:
        shown = visible_page(session, decisions, patient_id, filters, page=number, page_size=size)
    pages = max(1, -(-shown.total // size))
    return Listing(shown, document_titles(visit.rt, shown.documents), number, pages)


def read_log(visit: Visit, patient_id: str, limit: int, offset: int = 0, others_only: bool = False) -> list[LogLine]:
    """GET /v1/patients/{id}/access-log, newest first (`others_only`: without the reader's own entries)."""
    access = allowed(visit, Action.READ_ACCESS_LOG, patient_id)
    return access_log(visit.rt, visit.actor, access, limit=limit, offset=offset, newest_first=True, others_only=others_only)


@dataclass(frozen=True)
class Shown:
    document: Document
    title: str | None
    kind: str  # pdf, image, text, cda, download
    text: str | None = None
    cda: CdaView | None = None


def show_document(visit: Visit, patient_id: str, document_id: str, emergency: str | None = None) -> Shown:
    """GET …/documents/{id} (metadata), and for a text or CDA document shown in the page, GET …/content."""
    action = Action.EMERGENCY_READ if emergency else Action.READ_METADATA
    document = allowed(visit, action, patient_id, document_id, emergency).document
    assert document is not None
    title = document_titles(visit.rt, [document])[document.id]
    kind = {"application/pdf": "pdf", "image/png": "image", "image/jpeg": "image"}.get(document.mime_type, "download")
    if document.mime_type in ("text/plain", "application/xml") and document.size <= SHOWN_INLINE:
        allowed(visit, Action.EMERGENCY_READ if emergency else Action.READ_CONTENT, patient_id, document_id, emergency)
        data = _bytes(visit, document)
        if document.mime_type == "text/plain":
            return Shown(document, title, "text", text=data.decode("utf-8", errors="replace"))
        cda = render_cda(data)
        return Shown(document, title, "cda" if cda else "download", cda=cda)
    return Shown(document, title, kind)


def history(visit: Visit, patient_id: str, document_id: str, emergency: str | None = None) -> Listing:
    """GET …/documents/{id}/history: every version this visitor may see, oldest first, each decided on its own."""
    action = Action.EMERGENCY_READ if emergency else Action.READ_METADATA
    access = allowed(visit, action, patient_id, document_id, emergency)
    assert access.document is not None
    with visit.rt.sessions() as session:
        chain = versions.chain_of(session, access.document)
    shown = visible(visit.actor, action, access.record, chain, today=paris_date(), emergency_reason=emergency)
    return Listing(VisiblePage(list(shown), len(shown)), document_titles(visit.rt, shown), 1, 1)


def _bytes(visit: Visit, document: Document) -> bytes:
    try:
        return b"".join(read_document(visit.rt, document))
    except DocumentGone:
        raise PageRefused("not_found") from None


def document_content(visit: Visit, patient_id: str, document_id: str, emergency: str | None = None) -> Response:
    """GET …/documents/{id}/content: the bytes, a PDF or an image inline (for the page's frame), anything else a download."""
    action = Action.EMERGENCY_READ if emergency else Action.READ_CONTENT
    document = allowed(visit, action, patient_id, document_id, emergency).document
    assert document is not None
    headers = {"Cache-Control": "no-store", **content_headers(document.id, document.mime_type)}
    if document.mime_type == "application/pdf":
        headers["Content-Disposition"] = headers["Content-Disposition"].replace("attachment", "inline", 1)
        headers |= {"Content-Security-Policy": PDF_POLICY, "X-Frame-Options": "SAMEORIGIN"}
    return Response(_bytes(visit, document), media_type=served_type(document.mime_type), headers=headers)


def extension(mime_type: str) -> str:
    return EXTENSIONS.get(mime_type, ".bin")


def filters_of(request: Request) -> tuple[DocumentFilters, int]:
    """The list's filters from the query string; a value that is not one is left out (the form shows it unset)."""
    q = request.query_params

    def code(name: str) -> str | None:
        value = q.get(name, "")
        return value if CODE.fullmatch(value) else None

    def day(name: str) -> dt.date | None:
        try:
            return dt.date.fromisoformat(q.get(name, ""))
        except ValueError:
            return None

    number = int(q["page"]) if q.get("page", "").isdigit() and 0 < int(q["page"]) <= 100_000 else 1
    return DocumentFilters(code("class_code"), code("type_code"), day("from"), day("to")), number
