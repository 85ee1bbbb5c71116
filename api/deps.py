"""FastAPI dependencies: the process Runtime, the authenticated actor, the emergency reason.

A dependency that neither blocks nor computes much is `async def`: FastAPI runs it in the event loop, where a plain
`def` costs a trip through the thread pool (a thread woken, the GIL passed back and forth) on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from api.problems import ApiProblem
from pipeline.access.audit import MAX_JUSTIFICATION
from pipeline.access.policy import Actor
from pipeline.runtime import Runtime
from pipeline.sources import SourceIdentity


async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def current_actor(request: Request, authorization: Annotated[str | None, Header()] = None) -> Actor:
    """The actor named by a valid bearer token; 401 with a stable code otherwise. A token seen within the
    verifier's cache time is decided here; any other is verified in the thread pool, since with an identity
    provider that may fetch its keys over the network."""
    from pipeline.access.tokens import AuthError

    verifier = request.app.state.verifier
    try:
        claims = verifier.verify_known(authorization) or await run_in_threadpool(verifier.verify, authorization)
        actor: Actor = claims.actor()
        return actor
    except AuthError as failure:
        if failure.code == "verifier_unavailable":
            raise ApiProblem(503, failure.code, "Service unavailable", "Token keys cannot be fetched; retry later.") from None
        raise ApiProblem(401, failure.code, "Unauthorized", "A valid bearer token is required.") from None


def current_source(request: Request, authorization: Annotated[str | None, Header()] = None) -> SourceIdentity:
    """The source named by a valid API key (`Authorization: Bearer dmpk_…`, ingestion routes only);
    401 `invalid_credentials` otherwise, whatever was wrong (missing, malformed, unknown, revoked, a JWT)."""
    from pipeline.sources import CredentialError, authenticate

    scheme, _, key = (authorization or "").strip().partition(" ")
    rt: Runtime = request.app.state.runtime
    try:
        if scheme.lower() != "bearer":
            raise CredentialError("no bearer credentials")
        with rt.sessions() as session:
            return authenticate(session, rt.hmac_secret, key.strip())
    except CredentialError:
        raise ApiProblem(401, "invalid_credentials", "Unauthorized", "A valid source API key is required (Bearer dmpk_…).") from None


async def emergency_reason(x_emergency_reason: Annotated[str | None, Header(max_length=MAX_JUSTIFICATION)] = None) -> str | None:
    """Break-glass: a professional facing an immediate risk states the reason in this header (kept in the audit
    chain as the access's justification; longer than MAX_JUSTIFICATION characters is 422). Its bytes are read
    as UTF-8 when they are UTF-8 ("arrêt cardiaque"), else as Latin-1, the header's own charset."""
    if not x_emergency_reason or not x_emergency_reason.strip():
        return None
    raw = x_emergency_reason.encode("latin-1")  # the server decoded the header's bytes as Latin-1: undone losslessly
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return x_emergency_reason.strip()


RuntimeDep = Annotated[Runtime, Depends(runtime)]
ActorDep = Annotated[Actor, Depends(current_actor)]
EmergencyDep = Annotated[str | None, Depends(emergency_reason)]
SourceDep = Annotated[SourceIdentity, Depends(current_source)]
