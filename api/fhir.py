"""FHIR in HTTP terms: resources answered as `application/fhir+json` or `application/fhir+xml` (as the client asks),
problems as OperationOutcome, the ITI-65 body (JSON or XML) read (bounded) and handed to the MHD intake in a worker
thread. Routes: api/routes/fhir.py.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.responses import Response
from fhir.resources.R4B.resource import Resource
from sqlalchemy.exc import DBAPIError

from api.ingest import BATCH_STATUS, UNAVAILABLE_RETRY_SECONDS, refuse_when_queue_full
from api.problems import ApiProblem, too_large
from pipeline.core.reasons import Transient
from pipeline.ingest.intake import IntakeInterrupted
from pipeline.ingest.manifest import ManifestError
from pipeline.ingest.mhd import Provided, provide
from pipeline.runtime import Runtime
from pipeline.sharing.fhirjson import dumps
from pipeline.sharing.fhirxml import bundle_json_from_xml, xml_bytes
from pipeline.sharing.provide import SubmissionRefused
from pipeline.sharing.resources import outcome, transaction_response
from pipeline.sharing.search import SearchError
from pipeline.sources import SourceIdentity

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
PREFIX = "/fhir"
# A Bundle is read whole (its documents are base64 inside it): at most this much, whatever DMP_UPLOAD_MAX_REQUEST_BYTES says.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
Encoding = Literal["json", "xml"]
# The media types (and `_format` words) of each encoding, as FHIR R4 names them, older spellings included.
ENCODINGS: dict[str, Encoding] = {
    **dict.fromkeys(("json", FHIR_JSON, "application/json", "application/json+fhir"), "json"),
    **dict.fromkeys(("xml", FHIR_XML, "application/xml", "text/xml", "application/xml+fhir"), "xml"),
}  # fmt: skip


def is_fhir(request: Request) -> bool:
    """Whether the request is to the FHIR base (its errors are OperationOutcomes)."""
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def _encoding(media: str) -> Encoding | None:
    # In a query string an unencoded "+" reads as a space: "application/fhir xml" is "application/fhir+xml".
    return ENCODINGS.get(media.split(";")[0].strip().lower().replace(" ", "+"))


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.strip().partition("=")
        if name == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def answer_encoding(request: Request, *, strict: bool = True) -> Encoding:
    """How to write the answer, FHIR's way: `_format` first, then the Accept header (the best quality it
    names among ours), then the encoding of the body sent (an ITI-65 Bundle), JSON otherwise. An unknown
    `_format` is a 406 `unsupported_format` when `strict` (an error's own answer falls back to JSON)."""
    asked = request.query_params.get("_format")
    if asked is not None:
        if (encoding := _encoding(asked)) is None and strict:
            raise ApiProblem(
                406, "unsupported_format", "Not acceptable", "_format: json or xml (application/fhir+json, application/fhir+xml)."
            )
        return encoding or "json"
    best: tuple[float, Encoding] | None = None
    for part in request.headers.get("accept", "").split(","):
        media, *parameters = part.split(";")
        if (encoding := _encoding(media)) is not None and (quality := _quality(parameters)) > (best[0] if best else 0):
            best = (quality, encoding)
    if best is not None:
        return best[1]
    return _encoding(request.headers.get("content-type", "")) or "json"


def fhir_response(request: Request, resource: Resource, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A resource as the answer, in the encoding the client asked for: JSON as the model library writes it
    (pipeline/sharing/fhirjson.py: the same JSON, faster), or XML (pipeline/sharing/fhirxml.py)."""
    return _written(resource, answer_encoding(request), status, headers)


def _written(resource: Resource, encoding: Encoding, status: int, headers: dict[str, str] | None) -> Response:
    vary = {"Vary": "Accept", **(headers or {})}
    if encoding == "xml":
        return Response(xml_bytes(resource), status_code=status, media_type=FHIR_XML, headers=vary)
    return Response(dumps(resource), status_code=status, media_type=FHIR_JSON, headers=vary)


def outcome_response(request: Request, problem: ApiProblem) -> Response:
    """A problem (the product's stable code, its status and headers) as an OperationOutcome."""
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else {}
    headers.update(problem.headers)
    incident = problem.extra.get("instance")  # an unexpected failure's, for the operator
    issue = outcome(problem.status, problem.code, problem.detail, str(incident) if incident else None)
    return _written(issue, answer_encoding(request, strict=False), problem.status, headers)


def base_url(request: Request) -> str:
    """The FHIR base as the client reached it (links and attachment URLs are built on it)."""
    return str(request.base_url).rstrip("/") + PREFIX


def search_problem(error: SearchError) -> ApiProblem:
    return ApiProblem(400, error.code, "Invalid search", str(error))


async def _read_body(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large(limit, "request")
    return bytes(data)


def _provide(request: Request, rt: Runtime, data: bytes, source: str) -> Provided:
    wiring = request.app.state.intake.wiring()
    ready: list[str] = []
    provided = provide(rt, data, source, ready.append)
    if ready and provided.batch_id is not None:
        wiring.admit_batch(provided.batch_id)
    return provided


def answer(provided: Provided) -> list[tuple[str, str | None]]:
    """Per request entry of the Bundle, in its order: the status line and location of what it created."""
    listed = ("201 Created", f"List/{provided.submission_set_id}") if provided.submission_set_id else ("200 OK", None)
    entries: dict[int, tuple[str, str | None]] = {provided.submission.list_entry: listed}
    for document, item in zip(provided.submission.documents, provided.items, strict=True):
        status = "422 Unprocessable Entity" if item.state == "rejected" and item.reason else "201 Created"
        entries[document.entry] = (status, f"DocumentReference/{item.document_id}")
        if document.binary_entry is not None:
            entries[document.binary_entry] = (status, f"Binary/{item.document_id}")
    for entry, document_id in provided.changed.items():  # a status change: the version it changed
        entries[entry] = ("200 OK", f"DocumentReference/{document_id}")
    return [entries.get(index, ("200 OK", None)) for index in range(provided.submission.entries)]


async def provide_bundle(request: Request, source: SourceIdentity) -> Response:
    """ITI-65: read the Bundle (bounded), take it in, answer the transaction-response Bundle (200)."""
    if not source.may_submit("documents"):
        raise ApiProblem(403, "source_not_allowed", "Forbidden", f"A {source.kind} source may not submit documents.")
    sent = _encoding(request.headers.get("content-type", ""))
    if sent is None:
        raise ApiProblem(415, "unsupported_media_type", "Unsupported media type", f"Send {FHIR_JSON} or {FHIR_XML}.")
    answer_encoding(request)  # an unknown _format is refused before anything is read
    rt: Runtime = request.app.state.runtime
    limit = min(rt.settings.upload_max_request_bytes, MAX_BUNDLE_BYTES)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit, "request")
    await refuse_when_queue_full(rt)
    data = await _read_body(request, limit)
    try:
        if sent == "xml":
            data = await anyio.to_thread.run_sync(bundle_json_from_xml, data, limiter=request.app.state.intake.upload_threads)
        provided = await anyio.to_thread.run_sync(_provide, request, rt, data, source.id, limiter=request.app.state.intake.upload_threads)
    except SubmissionRefused as refused:
        raise ApiProblem(422, refused.code, "Unprocessable submission", str(refused)) from None
    except ManifestError as exc:
        raise ApiProblem(422, exc.code, "Unprocessable submission", str(exc)) from None
    except (Transient, DBAPIError, IntakeInterrupted):
        retry = {"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)}
        detail = "Storage, broker or index unreachable; send it again."
        raise ApiProblem(503, "service_unavailable", "Service unavailable", detail, headers=retry) from None
    # The batch status (GET /v1/ingest/batches/{id}, same key): the workers index or reject the documents after this answer.
    headers: dict[str, Any] = {"Location": BATCH_STATUS.format(provided.batch_id)} if provided.batch_id else {}
    if provided.replayed:
        headers["Idempotent-Replayed"] = "true"
    return fhir_response(request, transaction_response(answer(provided)), 200, headers)
