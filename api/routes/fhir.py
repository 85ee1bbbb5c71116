"""FHIR R4 / IHE MHD at /fhir: CapabilityStatement, ITI-65 (POST /fhir), ITI-66 (List, and its read), ITI-67 (DocumentReference),
ITI-68 (Binary, the attachment URL) and the access log as AuditEvents. The same policy, listing and audit as /v1:
every search and retrieve is decided and audited through the gate; `total` counts only what the caller may see.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from fhir.resources.R4B.list import List as FhirList

from api.access import access_log, check
from api.deps import ActorDep, EmergencyDep, RuntimeDep, SourceDep
from api.fhir import answer_encoding, base_url, fhir_response, provide_bundle, search_problem
from api.headers import content_headers, served_type
from api.problems import ApiProblem, not_found
from pipeline.access.gate import Access, Decisions, Refused
from pipeline.access.gate import check as gate_check
from pipeline.access.listing import visible_page
from pipeline.access.policy import Action, Actor
from pipeline.access.recordview import policy_fields
from pipeline.access.vocabulary import NOT_FOUND
from pipeline.core.clock import paris_date
from pipeline.core.envelope import IntegrityError
from pipeline.core.storage import ObjectNotFound
from pipeline.documents.stored import DocumentGone, read_document
from pipeline.documents.titles import document_titles
from pipeline.index.models import Document
from pipeline.runtime import Runtime
from pipeline.sharing.auditevents import audit_event
from pipeline.sharing.resources import (
    AUDIT_SEARCH,
    DOCUMENT_SEARCH,
    LIST_SEARCH,
    capability_statement,
    document_reference,
    searchset,
    submission_list,
)
from pipeline.sharing.search import (
    SearchError,
    document_filters,
    documents_by_id,
    ins_of,
    list_owner_of,
    owner_of,
    paging,
    patient_id_of,
    sharing_of,
    submission_sets_of,
)

# Described by its CapabilityStatement (/fhir/metadata), the FHIR way, not by /openapi.json: its bodies are FHIR resources.
# Documents up to this size are decrypted and checked whole before the first byte is sent (as /v1's).
WHOLE_BODY_LIMIT = 1 << 20
router = APIRouter(prefix="/fhir", tags=["fhir"], include_in_schema=False)
# Every query of these routes only reads: autocommit sessions (`Runtime.reads`), no BEGIN nor ROLLBACK around them.
# A patient id no record has: an unknown INS goes through the gate as a record that does not exist (audited alike).
NO_RECORD = "-"


def _params(request: Request, supported: dict[str, str]) -> dict[str, list[str]]:
    answer_encoding(request)  # an unknown _format: 406 before any query
    params: dict[str, list[str]] = defaultdict(list)
    for name, value in request.query_params.multi_items():
        if name == "_format":
            continue  # how to answer, not what to find
        if name not in supported:
            raise ApiProblem(400, "unsupported_search_parameter", "Invalid search", f"Unsupported search parameter: {name}.")
        params[name].append(value)
    return params


def _first(params: dict[str, list[str]], name: str) -> str | None:
    return params[name][-1] if params.get(name) else None


def _record(rt: Runtime, actor: Actor, action: Action, params: dict[str, list[str]], emergency: str | None) -> tuple[Access | None, str]:
    """The gate's answer for the record a search names: None when it is to look empty (no such record, or one the
    actor may not learn exists: the same answer); a refusal the actor may be told raises its 403."""
    try:
        ins = ins_of(_first(params, "patient.identifier"))
    except SearchError as error:
        raise search_problem(error) from None
    with rt.reads() as session:
        patient_id = patient_id_of(session, ins)
    verdict = gate_check(rt, actor, action, patient_id or NO_RECORD, emergency_reason=emergency)
    if isinstance(verdict, Refused):
        if verdict.told == NOT_FOUND:
            return None, ins or ""
        raise ApiProblem(403, str(verdict.told), "Forbidden", f"Access denied: {verdict.told}.")
    return verdict, ins or ""


def _links(request: Request, offset: int, count: int, more: bool) -> tuple[str, str | None]:
    items = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
    here = f"{base_url(request)}{request.url.path.removeprefix('/fhir')}"
    following = f"{here}?{urlencode([*items, ('_offset', str(offset + count))])}" if more else None
    return f"{here}?{urlencode([*items, ('_offset', str(offset))])}", following


@router.get("/metadata")
def metadata(request: Request) -> Response:
    """The CapabilityStatement: exactly what this server supports."""
    return fhir_response(request, capability_statement(base_url(request)))


@router.post("")
async def transaction(request: Request, source: SourceDep) -> Response:
    """ITI-65 Provide Document Bundle: a transaction Bundle (SubmissionSet List, DocumentReferences, Binaries)."""
    return await provide_bundle(request, source)


@router.get("/DocumentReference")
def find_document_references(request: Request, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> Response:
    """ITI-67 Find Document References: the documents the caller may see, newest service date first."""
    params = _params(request, DOCUMENT_SEARCH)
    try:
        page, filters = paging({k: v[-1] for k, v in params.items()}), document_filters(params)
    except SearchError as error:
        raise search_problem(error) from None
    action = Action.EMERGENCY_READ if emergency else Action.LIST
    access, ins = _record(rt, actor, action, params, emergency)
    base = base_url(request)
    if access is None or filters is None:
        return fhir_response(request, searchset(base, [], 0, _links(request, page.offset, page.count, False)[0], None))
    decisions = Decisions(actor, action, access.record, today=paris_date(), emergency_reason=emergency)
    with rt.reads() as session:
        shown = visible_page(session, decisions, access.record.patient_id, filters, page=page.page, page_size=page.count)
        sharing = sharing_of(session, [d.id for d in shown.documents])
    titles = document_titles(rt, shown.documents)
    resources = [document_reference(base, d, sharing.get(d.id), ins, titles[d.id]) for d in shown.documents]
    self_url, next_url = _links(request, page.offset, page.count, page.offset + page.count < shown.total)
    return fhir_response(request, searchset(base, resources, shown.total, self_url, next_url))


@router.get("/List")
def find_document_lists(request: Request, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> Response:
    """ITI-66 Find Document Lists: the SubmissionSets that brought documents the caller may see (and only those entries)."""
    params = _params(request, LIST_SEARCH)
    try:
        page = paging({k: v[-1] for k, v in params.items()})
    except SearchError as error:
        raise search_problem(error) from None
    code, status = _first(params, "code"), _first(params, "status")
    action = Action.EMERGENCY_READ if emergency else Action.LIST
    access, ins = _record(rt, actor, action, params, emergency)
    base = base_url(request)
    wanted = (code is None or code.endswith("submissionset")) and (status is None or status.endswith("current"))
    if access is None or not wanted:
        return fhir_response(request, searchset(base, [], 0, _links(request, page.offset, page.count, False)[0], None))
    decisions = Decisions(actor, action, access.record, today=paris_date(), emergency_reason=emergency)
    lists = _visible_lists(rt, decisions, access.record.patient_id, ins)
    shown = lists[page.offset : page.offset + page.count]
    self_url, next_url = _links(request, page.offset, page.count, page.offset + page.count < len(lists))
    return fhir_response(request, searchset(base, shown, len(lists), self_url, next_url))


def _visible_lists(rt: Runtime, decisions: Decisions, patient_id: str, ins: str, list_id: str | None = None) -> list[FhirList]:
    """The record's SubmissionSets (or the one `list_id` names) as Lists of the documents `decisions` allows; a
    submission whose every document is hidden from the caller is not shown at all."""
    with rt.reads() as session:
        sets = submission_sets_of(session, patient_id, list_id)
        rows = documents_by_id(session, [document_id for _, documents in sets for document_id in documents])
    lists = []
    for row, documents in sets:
        if seen := [d for d in documents if d in rows and decisions.allows(policy_fields(rows[d]))]:
            lists.append(submission_list(row.id, row.unique_id, row.created_at, ins, row.source, seen))
    return lists


@router.get("/List/{list_id}")
def read_document_list(request: Request, list_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> Response:
    """A SubmissionSet List by its id (the read beside ITI-66's search, the location ITI-65 answered): as the
    search shows it, to whom it shows it. Any refusal, or a List none of whose documents the caller may see, is
    the one 404, audited by the gate as any attempt."""
    with rt.reads() as session:
        owner = list_owner_of(session, list_id)
    action = Action.EMERGENCY_READ if emergency else Action.LIST
    access, (patient_id, ins) = _owned(rt, actor, action, owner, emergency)
    decisions = Decisions(actor, action, access.record, today=paris_date(), emergency_reason=emergency)
    found = _visible_lists(rt, decisions, patient_id, ins, list_id)
    if not found:
        raise not_found()
    return fhir_response(request, found[0])


def _owned(
    rt: Runtime, actor: Actor, action: Action, owner: tuple[str, str] | None, emergency: str | None, document_id: str | None = None
) -> tuple[Access, tuple[str, str]]:
    """The gate's answer for a resource read by its id on the record `owner` names (patient id, INS; None when
    the id names nothing), and that owner. Any refusal is the one 404, the id alone must not tell whether the
    resource exists; the gate audits the attempt either way."""
    verdict = gate_check(rt, actor, action, owner[0] if owner else NO_RECORD, document_id=document_id, emergency_reason=emergency)
    if owner is None or isinstance(verdict, Refused):
        raise not_found()
    return verdict, owner


def _document(rt: Runtime, actor: Actor, action: Action, document_id: str, emergency: str | None) -> tuple[Document, str]:
    """The document `document_id` and its patient's INS, as the gate allows it (`_owned`)."""
    with rt.reads() as session:
        owner = owner_of(session, document_id)
    access, (_, ins) = _owned(rt, actor, Action.EMERGENCY_READ if emergency else action, owner, emergency, document_id)
    if access.document is None:
        raise not_found()
    return access.document, ins


@router.get("/DocumentReference/{document_id}")
def read_document_reference(request: Request, document_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> Response:
    """A DocumentReference by its id (the read beside ITI-67's search): as the search shows it, to whom it shows it."""
    document, ins = _document(rt, actor, Action.READ_METADATA, document_id, emergency)
    with rt.reads() as session:
        sharing = sharing_of(session, [document.id])
    title = document_titles(rt, [document])[document.id]
    return fhir_response(request, document_reference(base_url(request), document, sharing.get(document.id), ins, title))


@router.get("/Binary/{document_id}")
def retrieve_document(document_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> Response:
    """ITI-68 Retrieve Document: the decrypted bytes, integrity-checked, byte-identical to what was provided.
    Any refusal is the one 404: the id alone must not tell whether a document exists."""
    document, _ = _document(rt, actor, Action.READ_CONTENT, document_id, emergency)
    # As /v1's content route: never the stored type as it is, never a page (api/headers.py).
    headers = {"Content-Length": str(document.size), "Cache-Control": "no-store", **content_headers(document.id, document.mime_type)}
    try:
        chunks: Iterator[bytes] = read_document(rt, document)
        if document.size > WHOLE_BODY_LIMIT:  # streamed: an integrity failure then cuts the stream, never a false whole
            return StreamingResponse(chunks, media_type=served_type(document.mime_type), headers=headers)
        body = b"".join(chunks)
    except (DocumentGone, ObjectNotFound):
        raise not_found() from None
    except IntegrityError:
        raise ApiProblem(500, "integrity_error", "Internal error", "The stored document failed its integrity check.") from None
    return Response(body, media_type=served_type(document.mime_type), headers=headers)


@router.get("/AuditEvent")
def find_audit_events(request: Request, rt: RuntimeDep, actor: ActorDep) -> Response:
    """The record's access log as BALP AuditEvents, as the caller may read it (the patient, the attending physician)."""
    params = _params(request, AUDIT_SEARCH)
    try:
        page = paging({k: v[-1] for k, v in params.items()})
        ins = ins_of(_first(params, "patient.identifier"))
    except SearchError as error:
        raise search_problem(error) from None
    with rt.reads() as session:
        patient_id = patient_id_of(session, ins)
    access = check(rt, actor, Action.READ_ACCESS_LOG, patient_id or NO_RECORD)
    lines = access_log(rt, actor, access, limit=page.count + 1, offset=page.offset)
    events = [audit_event(line, ins or "") for line in lines[: page.count]]
    self_url, next_url = _links(request, page.offset, page.count, len(lines) > page.count)
    return fhir_response(request, searchset(base_url(request), events, None, self_url, next_url))  # no total: the log is paged only
