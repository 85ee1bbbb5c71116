"""Errors as RFC 9457 problem details, each with a stable `code`."""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from api.middleware import HttpMiddleware

PROBLEM_TYPE = "https://dmp.example/problems/"
log = logging.getLogger(__name__)


class Problem(BaseModel):
    # Some problems carry extension members (RFC 9457 section 3.2), e.g. `limit_bytes` on a 413.
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.code, self.title, self.detail = status, code, title, detail or title
        self.extra, self.headers = extra or {}, headers or {}


def not_found() -> ApiProblem:
    """The single answer for a missing document, another patient's, or one this actor may not know of."""
    return ApiProblem(404, "not_found", "Not found", "No such resource for this actor.")


def too_large(limit: int, what: str) -> ApiProblem:
    return ApiProblem(
        413, "payload_too_large", "Payload too large", f"The {what} is larger than {limit} bytes.", extra={"limit_bytes": limit}
    )


def problem_response(exc: ApiProblem) -> JSONResponse:
    """The problem document for `exc`, with its extension members and headers."""
    body = Problem(type=PROBLEM_TYPE + exc.code, title=exc.title, status=exc.status, detail=exc.detail, code=exc.code)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    headers.update(exc.headers)
    content = {**body.model_dump(), **exc.extra}
    return JSONResponse(content, status_code=exc.status, media_type="application/problem+json", headers=headers or None)


def answer_problem(request: Request, exc: ApiProblem) -> Response:
    """The problem document; under /fhir the same problem as an OperationOutcome (api/fhir.py)."""
    from api.fhir import is_fhir, outcome_response

    return outcome_response(request, exc) if is_fhir(request) else problem_response(exc)


async def problem_handler(request: Request, exc: ApiProblem) -> Response:
    """The exception handler for ApiProblem: `answer_problem`."""
    return answer_problem(request, exc)


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for a problem document."""
    return {"model": Problem, "description": description, "content": {"application/problem+json": {}}}


# Declared on every router so the OpenAPI document tells clients what errors look like.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("The request cannot be read (malformed body)."),
    422: problem_doc("A parameter or the body is invalid; `detail` says which."),
    401: problem_doc("Missing, invalid or expired bearer token."),
    503: problem_doc("The identity provider's keys cannot be fetched right now."),
    403: problem_doc("Denied by the access policy; `code` gives the reason."),
    404: problem_doc("No such resource for this actor (also what an actor sees of a document it may not know of)."),
    413: problem_doc("The JSON body is larger than 64 KiB (`payload_too_large`, `limit_bytes`)."),
    500: problem_doc("An unexpected failure (`internal_error`, with an `instance` to quote to the operator); nothing about its cause."),
}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (bad body, unknown route, wrong method) as problem details too."""
    assert isinstance(exc, StarletteHTTPException)  # registered for that class only; Starlette types it Exception
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = await problem_handler(request, ApiProblem(exc.status_code, code, str(exc.detail) if exc.status_code != 404 else "Not found"))
    response.headers.update(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method of every route on this path: Starlette names only the first route's (GET, not PUT)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def validation_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for that class only
    # Name the fields, never echo their values (they can carry patient data).
    fields = sorted({".".join(str(p) for p in error.get("loc", ())) for error in exc.errors()})
    return await problem_handler(_request, ApiProblem(422, "invalid_request", "Invalid request", "Invalid: " + ", ".join(fields)))


def _where(exc: BaseException) -> str:
    """Where `exc` was raised, innermost first: the raising frame, then our own frames (locations, never values)."""
    frames = traceback.extract_tb(exc.__traceback__)[::-1]
    ours = [frame for frame in frames[1:] if "site-packages" not in frame.filename][:6]
    return " < ".join(f"{frame.filename}:{frame.lineno} {frame.name}" for frame in frames[:1] + ours)


class ResponseAborted(Exception):
    """A failure after the answer had started: the connection is cut (a short body, never a false whole one)."""


class InternalErrors(HttpMiddleware):
    """ASGI middleware: any exception a route lets out becomes `500 internal_error` as a problem document
    (an OperationOutcome under /fhir).

    Exception texts can hold anything (a database error quotes the statement's values), so neither the
    answer nor the log carries one: the log line names the incident, the exception's class, the route
    and where in the code it was raised; the answer only the incident (`instance`), for the operator.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            incident = str(uuid.uuid4())
            route = getattr(scope.get("route"), "path", "-")
            log.error("incident %s: %s in %s %s at %s", incident, type(exc).__name__, scope["method"], route, _where(exc))
            if started:
                raise ResponseAborted(f"incident {incident}") from None
            problem = ApiProblem(
                500, "internal_error", "Internal error", "The server failed to answer.", extra={"instance": f"urn:uuid:{incident}"}
            )
            await answer_problem(Request(scope), problem)(scope, receive, send)
