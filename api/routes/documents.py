"""A patient's documents: list, metadata, content (streamed, decrypted, integrity-checked)."""

from __future__ import annotations

import datetime as dt
import logging
import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pydantic_core
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from api.access import check
from api.deps import ActorDep, EmergencyDep, RuntimeDep
from api.headers import EXTENSIONS, OCTET_STREAM, content_headers, served_type
from api.inputs import ClassCodeQuery, FromDateQuery, PageQuery, ToDateQuery, TypeCodeQuery
from api.problems import PROBLEM_RESPONSES, ApiProblem, not_found
from pipeline.access.gate import Decisions
from pipeline.access.listing import DocumentFilters, listing_beside, visible_page
from pipeline.access.policy import Action
from pipeline.core.clock import paris_date
from pipeline.core.envelope import IntegrityError
from pipeline.core.storage import ObjectNotFound
from pipeline.documents.stored import DocumentGone, ReadAhead, read_document
from pipeline.documents.titles import document_titles
from pipeline.index.models import Document

if TYPE_CHECKING:
    from pipeline.access.recordview import PolicyRow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/patients/{patient_id}/documents", tags=["documents"], responses=PROBLEM_RESPONSES)


class DocumentOut(BaseModel):
    id: str
    title: str | None
    class_code: str
    type_code: str
    service_date: dt.date | None
    mime_type: str
    size: int
    source: str
    author_id: str | None
    author_profession: str | None
    masked: bool
    deposited_at: dt.datetime
    status: str = Field(description="current, superseded or entered-in-error (FHIR DocumentReference.status); see /history.")
    version: int
    supersedes: str | None
    superseded_by: str | None

    @classmethod
    def of(cls, d: PolicyRow, title: str | None) -> DocumentOut:
        """`d`: a Document or a row of its columns; `title`: opened from the sealed one (pipeline.documents.titles.document_titles)."""
        return cls.model_validate(_out_values(d, title, _FROM_DOCUMENT))


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    page: int
    page_size: int
    total: int


# DocumentOut's fields after its id and title (`DocumentOut.of`, `page_json`), read all at once (C-level): a Document's
# attributes of these names, or a row's columns of these names (found by position once per page: faster than by name).
_RENAMED = {"deposited_at": "created_at", "supersedes": "supersedes_id", "superseded_by": "superseded_by_id"}
_OUT_FIELDS = tuple(DocumentOut.model_fields)
assert _OUT_FIELDS[:2] == ("id", "title")
_OUT_COLUMNS = [_RENAMED.get(field, field) for field in _OUT_FIELDS[2:]]
_FROM_DOCUMENT = operator.attrgetter(*_OUT_COLUMNS)
# The columns a listed row is read for: its DocumentOut fields (`page_json`) and its title's key and context (`document_titles`).
_LISTED_COLUMNS = frozenset({*_OUT_COLUMNS, "id", "title_sealed", "record_key_id", "patient_id"})


def _out_values(document: PolicyRow, title: str | None, rest_of: Callable[[Any], tuple[Any, ...]]) -> dict[str, Any]:
    """DocumentOut's fields of a document (`rest_of`: its values after the id and title, by `_OUT_COLUMNS`)."""
    return dict(zip(_OUT_FIELDS, (document.id, title, *rest_of(document)), strict=True))


def page_json(documents: list[PolicyRow], titles: dict[str, str | None], *, page: int, page_size: int, total: int) -> bytes:
    """A DocumentPage's JSON, as `model_dump_json` writes it (tests/api holds them equal), without building a model per
    document: the values come typed from the index already, and pydantic-core writes them (a sixth of a list's CPU
    went to validating fifty DocumentOut and dumping them again)."""
    from_row: Callable[[Any], tuple[Any, ...]] | None = None
    items = []
    for document in documents:
        if isinstance(document, Document):
            items.append(_out_values(document, titles[document.id], _FROM_DOCUMENT))
        else:
            from_row = from_row or operator.itemgetter(*map(document._fields.index, _OUT_COLUMNS))
            items.append(_out_values(document, titles[document.id], from_row))
    return pydantic_core.to_json({"items": items, "page": page, "page_size": page_size, "total": total})


def _action(emergency: str | None, action: Action) -> Action:
    return Action.EMERGENCY_READ if emergency else action


@router.get("", response_model=DocumentPage)
def list_documents(
    patient_id: str,
    rt: RuntimeDep,
    actor: ActorDep,
    emergency: EmergencyDep,
    class_code: ClassCodeQuery = None,
    type_code: TypeCodeQuery = None,
    date_from: FromDateQuery = None,
    date_to: ToDateQuery = None,
    page: PageQuery = 1,
    page_size: int = Query(default=50, ge=1, le=200),
    include_superseded: bool = Query(default=False, description="Superseded versions too (by default current versions only)."),
) -> Response:
    """The documents this actor may see, newest service date first; filters by class, type and date. Current
    versions only, unless `include_superseded`."""
    action = _action(emergency, Action.LIST)
    filters = DocumentFilters(
        class_code=class_code, type_code=type_code, served_from=date_from, served_to=date_to, include_superseded=include_superseded
    )
    # Autocommit, no BEGIN nor ROLLBACK: the patient's own access check and the listing on one connection, the listing
    # read by the statement that appends the access's audit entry (2 round trips in all) when that way is open.
    beside = listing_beside(patient_id, filters, page=page, page_size=page_size, columns=_LISTED_COLUMNS)
    with rt.reads() as session:
        access = check(rt, actor, action, patient_id, emergency_reason=emergency, reads=session, beside=beside)
        decisions = Decisions(actor, action, access.record, today=paris_date(), emergency_reason=emergency)
        read = beside.rows if beside is not None else None
        shown = visible_page(session, decisions, patient_id, filters, page=page, page_size=page_size, read=read)
    titles = document_titles(rt, shown.documents)  # one record key for the page, not one per row
    # Serialized here, in the request's thread, as `response_model` documents it: FastAPI would validate the
    # page again in a second trip through the thread pool before serializing it.
    body = page_json(shown.documents, titles, page=page, page_size=page_size, total=shown.total)
    return Response(body, media_type="application/json")


@router.get("/{document_id}", response_model=DocumentOut)
def document_metadata(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> DocumentOut:
    access = check(rt, actor, _action(emergency, Action.READ_METADATA), patient_id, document_id=document_id, emergency_reason=emergency)
    document = access.document
    assert document is not None
    return DocumentOut.of(document, document_titles(rt, [document])[document.id])


# Documents up to this size are decrypted and verified whole before the first byte is sent: one storage
# round trip in the request's own thread, and a damaged object gets a clean error instead of a cut stream.
WHOLE_BODY_LIMIT = 1 << 20


SERVED_TYPES: dict[int | str, dict[str, Any]] = {200: {"content": {kind: {} for kind in (*EXTENSIONS, OCTET_STREAM)}}}


@router.get("/{document_id}/content", response_class=StreamingResponse, responses=SERVED_TYPES)
def document_content(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> Response:
    """The decrypted bytes, integrity-checked. Large documents are streamed: an integrity failure then aborts
    the stream, so corrupted bytes are never served whole."""
    ahead = ReadAhead(rt, WHOLE_BODY_LIMIT)  # a small document is read while its access is audited
    action = _action(emergency, Action.READ_CONTENT)
    access = check(rt, actor, action, patient_id, document_id=document_id, emergency_reason=emergency, meanwhile=ahead.start)
    document = access.document
    assert document is not None
    # Never the stored type as it is, never a page: see api/headers.py.
    headers = {"Content-Length": str(document.size), "Cache-Control": "no-store", **content_headers(document.id, document.mime_type)}
    media_type = served_type(document.mime_type)
    try:
        if document.size > WHOLE_BODY_LIMIT:
            chunks: Iterator[bytes] = read_document(rt, document)
            return StreamingResponse(chunks, media_type=media_type, headers=headers)
        body = ahead.body(document)
    except (DocumentGone, ObjectNotFound):
        raise not_found() from None  # shredded since the check: gone, like a document that never was
    except IntegrityError:
        log.error("document %s failed its integrity check", document.id)
        raise ApiProblem(500, "integrity_error", "Internal error", "The stored document failed its integrity check.") from None
    return Response(body, media_type=media_type, headers=headers)
