"""Ingestion over HTTP for hospitals, labs and the insurer, authenticated by a source API key.

Submissions answer 202 with the batch id and its status URL; the body streams into the inbox
(see pipeline/ingest/uploads.py) and the usual intake records and enqueues it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import RuntimeDep, SourceDep
from api.ingest import batch_work, feed_work, require_scope, submit
from api.inputs import BatchIdPath
from api.problems import PROBLEM_RESPONSES, ApiProblem, not_found, problem_doc
from pipeline.index.queries import batch_of_source, feed_of_source
from pipeline.ingest.multipart import MultipartError, boundary_of
from pipeline.ingest.uploads import METADATA_FIELDS, receive_document, receive_feed_upload, receive_multipart_batch, receive_zip
from pipeline.sources import SCOPES
from pipeline.status import batch_status, feed_status

INGEST_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **{code: answer for code, answer in PROBLEM_RESPONSES.items() if code != 503},
    400: problem_doc("The body is not well-formed (multipart syntax, Content-Length, Idempotency-Key)."),
    401: problem_doc("Missing, unknown or revoked source API key (`invalid_credentials`)."),
    403: problem_doc("This source may not submit this (`source_not_allowed`): labs and hospitals send documents, the insurer feeds."),
    409: problem_doc("A request with this Idempotency-Key is still running (`idempotency_key_in_use`, `Retry-After`)."),
    413: problem_doc("The request or one file is larger than allowed (`payload_too_large`, `limit_bytes`)."),
    429: problem_doc("The ingestion queue is deeper than allowed (`queue_full`): retry after `Retry-After` seconds."),
    415: problem_doc("Unsupported Content-Type for this route (`unsupported_media_type`)."),
    422: problem_doc("The submission is unusable as a whole (manifest, metadata, feed header, hostile archive); `code` says why."),
    503: problem_doc("Storage, broker or index unreachable (`service_unavailable`, `Retry-After`)."),
}
router = APIRouter(prefix="/v1/ingest", tags=["ingest"], responses=INGEST_PROBLEMS)
ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
FEED_TYPES = {"text/csv": "csv", "application/x-ndjson": "ndjson", "application/ndjson": "ndjson", "application/jsonl": "ndjson"}
BatchId = BatchIdPath
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=257, description="Retrying with the same key returns the first answer instead of submitting again."),
]

_BINARY = {"type": "string", "format": "binary"}
_METADATA = {
    "type": "string",
    "description": f"JSON object with the manifest's fields: {', '.join(METADATA_FIELDS)} (document_type optional)",
}
_FILES = {"type": "array", "items": _BINARY, "description": "documents, each named by its filename as the manifest's `file`"}
DOCUMENT_BODY = {"type": "object", "required": ["metadata", "file"], "properties": {"metadata": _METADATA, "file": _BINARY}}
BATCH_PARTS = {"type": "object", "required": ["manifest", "file"], "properties": {"manifest": _BINARY, "file": _FILES}}


def _body(content: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {kind: {"schema": schema} for kind, schema in content.items()}}}


class Accepted(BaseModel):
    batch: str
    status_url: str
    total: int
    resumed: bool
    feed: str | None = None


class SourceInfo(BaseModel):
    source: str
    may_submit: list[str]


class ItemStatus(BaseModel):
    file: str
    source_document_id: str | None
    state: str
    reason: str | None
    message: str | None
    document_id: str | None
    class_code: str | None
    type_code: str | None
    attempts: int


class BatchStatus(BaseModel):
    kind: str
    batch: str
    source: str
    total: int
    counts: dict[str, int]
    items: list[ItemStatus]


class LineRejection(BaseModel):
    line_number: int
    line_id: str | None
    reason: str
    message: str


class FeedStatus(BaseModel):
    kind: str
    batch: str
    feed: str
    source: str
    format: str
    total: int
    counts: dict[str, int]
    rejections: list[LineRejection]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _unsupported(expected: str) -> ApiProblem:
    return ApiProblem(415, "unsupported_media_type", "Unsupported media type", f"Send {expected}.")


def _boundary(request: Request) -> bytes:
    if _media_type(request) != "multipart/form-data":
        raise _unsupported("multipart/form-data")
    try:
        return boundary_of(request.headers["content-type"])
    except MultipartError as exc:
        raise ApiProblem(400, "multipart_invalid", "Malformed multipart body", str(exc)) from None


@router.post(
    "/documents",
    status_code=202,
    response_model=Accepted,
    openapi_extra=_body({"multipart/form-data": DOCUMENT_BODY}),
)
async def submit_document(request: Request, source: SourceDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """One document and its metadata (multipart: a `metadata` JSON part and a `file` part): a batch of one."""
    require_scope(source, "documents")
    boundary = _boundary(request)
    return await submit(request, source, "documents", idempotency_key, batch_work(receive_document, boundary, source.id))


@router.post(
    "/batches",
    status_code=202,
    response_model=Accepted,
    openapi_extra=_body({"application/zip": _BINARY, "multipart/form-data": BATCH_PARTS}),
)
async def submit_batch(request: Request, source: SourceDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A batch: a zip holding manifest.csv and the documents (`Content-Type: application/zip`), or
    multipart with a `manifest` part and one `file` part per document."""
    require_scope(source, "documents")
    if _media_type(request) in ZIP_TYPES:
        work = batch_work(receive_zip, source.id)
    else:
        work = batch_work(receive_multipart_batch, _boundary(request), source.id)
    return await submit(request, source, "batches", idempotency_key, work)


@router.post(
    "/feeds",
    status_code=202,
    response_model=Accepted,
    openapi_extra=_body({"text/csv": {"type": "string"}, "application/x-ndjson": {"type": "string"}}),
)
async def submit_feed(request: Request, source: SourceDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A reimbursement feed (insurer only): the CSV or NDJSON file as the body."""
    require_scope(source, "feeds")
    fmt = FEED_TYPES.get(_media_type(request))
    if fmt is None:
        raise _unsupported("text/csv or application/x-ndjson")
    return await submit(request, source, "feeds", idempotency_key, feed_work(receive_feed_upload, fmt, source.id))


@router.get("/source", response_model=SourceInfo)
def read_source(source: SourceDep) -> dict[str, Any]:
    """The source this API key belongs to and what it may submit (`dmp ingest --api` checks its
    `--source` against it before sending anything)."""
    return {"source": source.id, "may_submit": sorted(SCOPES.get(source.kind, ()))}


@router.get("/batches/{batch_id}", response_model=BatchStatus)
def read_batch_status(batch_id: BatchId, rt: RuntimeDep, source: SourceDep) -> dict[str, Any]:
    """Per document: state, class and type once indexed, reason and message if rejected (as `dmp status --json`).
    A source sees its own batches only."""
    with rt.sessions() as session:
        if batch_of_source(session, batch_id, source.id) is None:
            raise not_found()
        return batch_status(session, batch_id)


@router.get("/feeds/{feed_id}", response_model=FeedStatus)
def read_feed_status(feed_id: BatchId, rt: RuntimeDep, source: SourceDep) -> dict[str, Any]:
    """Lines stored, already known and rejected (with line numbers and reasons). A source sees its own feeds only."""
    with rt.sessions() as session:
        if feed_of_source(session, feed_id, source.id) is None:
            raise not_found()
        return feed_status(session, feed_id)
