"""FHIR in HTTP terms: resources answered as `application/fhir+json`, problems as OperationOutcome, the
ITI-65 body read (bounded) and handed to the MHD intake in a worker thread. Routes: api/routes/fhir.py.
"""

from __future__ import annotations

from typing import Any

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
from pipeline.sharing.provide import SubmissionRefused
from pipeline.sharing.resources import outcome, transaction_response
from pipeline.sharing.search import SearchError
from pipeline.sources import SourceIdentity

FHIR_JSON = "application/fhir+json"
PREFIX = "/fhir"
# A Bundle is read whole (its documents are base64 inside the JSON): at most this much, whatever DMP_UPLOAD_MAX_REQUEST_BYTES says.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
JSON_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")


def is_fhir(request: Request) -> bool:
    """Whether the request is to the FHIR base (its errors are OperationOutcomes)."""
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def fhir_response(resource: Resource, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A resource as the answer, as the model library writes it (pipeline/sharing/fhirjson.py: the same JSON, faster)."""
    return Response(dumps(resource), status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(problem: ApiProblem) -> Response:
    """A problem (the product's stable code, its status and headers) as an OperationOutcome."""
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else {}
    headers.update(problem.headers)
    incident = problem.extra.get("instance")  # an unexpected failure's, for the operator
    issue = outcome(problem.status, problem.code, problem.detail, str(incident) if incident else None)
    return fhir_response(issue, problem.status, headers)


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
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise ApiProblem(415, "unsupported_media_type", "Unsupported media type", f"Send {FHIR_JSON}.")
    rt: Runtime = request.app.state.runtime
    limit = min(rt.settings.upload_max_request_bytes, MAX_BUNDLE_BYTES)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit, "request")
    await refuse_when_queue_full(rt)
    data = await _read_body(request, limit)
    try:
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
    return fhir_response(transaction_response(answer(provided)), 200, headers)
