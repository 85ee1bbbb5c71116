"""What a request may carry into the index: bounded identifiers, bounded pages, strictly typed bodies.

Every value from outside is bounded here by the width of the column it reaches, so SQLite (which does
not enforce widths) and PostgreSQL (which refuses longer values, and NUL in any string) answer alike:
`422 invalid_request` naming the field, never a 500 nor 5 MB stored. The bounds are declared in the
OpenAPI document, so clients (and schemathesis) see them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware import HttpMiddleware
from api.problems import problem_response, too_large
from pipeline.core.identity import MAX_ACTOR_ID, identifier_pattern


def _identifier(width: int) -> dict[str, Any]:
    return {"min_length": 1, "max_length": width, "pattern": identifier_pattern(width)}


# A professional (RPPS number) or any actor named by the subject of their tokens.
ActorIdPath = Annotated[str, Path(**_identifier(MAX_ACTOR_ID), description="The actor's id: their tokens' subject (an RPPS number).")]
ActorIdField = Annotated[str, Field(**_identifier(MAX_ACTOR_ID))]
# Batch and feed ids are UUIDs; a little room is left for ids made elsewhere.
BatchIdPath = Annotated[str, Path(**_identifier(64))]
# documents.class_code and type_code
ClassCodeQuery = Annotated[str | None, Query(**_identifier(8))]
TypeCodeQuery = Annotated[str | None, Query(**_identifier(32))]


def _calendar_date(value: object) -> object:
    """Only `YYYY-MM-DD` is a date here: pydantic would also read `0` or `1700000000` as a Unix time."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a date is YYYY-MM-DD")
    return value


# A calendar date (RFC 3339 full-date) in the query string: `from` and `to` (FastAPI keeps the validator
# only when the Query is inside the Annotated, hence the two).
FromDateQuery = Annotated[dt.date | None, BeforeValidator(_calendar_date), Query(alias="from")]
ToDateQuery = Annotated[dt.date | None, BeforeValidator(_calendar_date), Query(alias="to")]


def _rfc3339(value: object) -> object:
    """Only a string is a moment here: pydantic would also read `0` or `1700000000` as a Unix time."""
    if not isinstance(value, str):
        raise ValueError("a moment is an RFC 3339 string with its offset")
    return value


def _in_utc(value: dt.datetime) -> dt.datetime:
    """The moment in UTC; one that UTC cannot hold (year 9999 at a negative offset) is refused, not a 500."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the moment is out of range") from None


# When a grant ends (an authorization, a declared consent, a facility's stay): RFC 3339 with its offset (a moment
# without one would be read in an unknown zone); in force strictly before it.
UntilField = Annotated[
    AwareDatetime, Field(strict=False, description="When it ends (RFC 3339, with its offset); in force strictly before."),
    BeforeValidator(_rfc3339), AfterValidator(_in_utc),
]  # fmt: skip


# Far beyond any real record (a million pages of documents or care lines) and well inside the 64-bit
# integers the database's OFFSET takes, whatever the page size.
MAX_PAGE = 1_000_000
MAX_OFFSET = 1_000_000_000
PageQuery = Annotated[int, Query(ge=1, le=MAX_PAGE)]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


class ClosedBody(BaseModel):
    """A JSON request body that names no field it does not have: a misspelt optional field must not pass for
    an absent one (422 `invalid_request`)."""

    model_config = ConfigDict(extra="forbid")


class StrictBody(ClosedBody):
    """A closed JSON request body whose values must have their declared JSON type: `true`/`false` for a boolean
    (never 1, 0 nor "yes"), a string for a string."""

    model_config = ConfigDict(strict=True, extra="forbid")


# The JSON routes take settings and ids: a few hundred bytes. FastAPI reads a body whole, before the token is
# even checked, so without a bound anyone could make a process hold gigabytes.
MAX_JSON_BODY_BYTES = 64 * 1024
# Submissions stream their bodies under their own limits (DMP_UPLOAD_MAX_REQUEST_BYTES, api/ingest.py).
STREAMED_PREFIX = "/v1/ingest/"
# The patient's own document upload streams too (api/routes/contributions.py), under the same limits.
SOURCE_JSON_PREFIX = "/v1/ingest/documents/"
STREAMED_UPLOAD = re.compile(r"^/v1/patients/[^/]+/documents$")
# ITI-65 Bundles (POST /fhir) are read under their own limit too (api/fhir.py MAX_BUNDLE_BYTES).
FHIR_TRANSACTION = "/fhir"


class BodyLimit(HttpMiddleware):
    """ASGI middleware: `413 payload_too_large` for a body over MAX_JSON_BODY_BYTES on any route but the
    submissions, from Content-Length before a byte is read, else as soon as the stream passes it. The
    body is gathered here (never more than the limit) and handed on whole."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BODY_BYTES) -> None:
        super().__init__(app)
        self.limit = limit

    def applies_to(self, scope: Scope) -> bool:
        path = scope["path"]
        uploading = scope.get("method") == "POST" and STREAMED_UPLOAD.match(path) is not None
        # Submissions stream their bodies; a source's JSON requests on its documents (deprecate, withdraw…) do not.
        streamed = path.startswith(STREAMED_PREFIX) and not path.startswith(SOURCE_JSON_PREFIX)
        return not (streamed or uploading or path == FHIR_TRANSACTION)  # submissions: their own limits

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self.refusal()(scope, receive, send)  # unread
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self.refusal()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what comes after the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def refusal(self) -> ASGIApp:
        """The 413 answer, made only when a body is refused (a JSON response built, and rendered, per request was a
        third of this middleware's cost)."""
        return problem_response(too_large(self.limit, "request body"))
