"""Signing in (the identity provider, or a demo identity in embedded mode on loopback) and out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.portal.demo import demo_enabled, demo_identities
from api.portal.sessions import clear_cookie, session_of, set_cookie
from api.portal.web import FormDep, PageRefused, ensure_session, redirect, render, store
from pipeline.access.gate import PROFESSIONAL_KINDS
from pipeline.access.policy import Actor, ActorKind
from pipeline.access.tokens import Claims

router = APIRouter(include_in_schema=False)


def home_of(actor: Actor) -> str:
    if actor.kind == ActorKind.PATIENT:
        return "/patient"
    if actor.kind == ActorKind.LEGAL_REPRESENTATIVE:
        return "/patient/records"
    return "/pro" if actor.kind in PROFESSIONAL_KINDS else "/"


@router.get("/")
def sign_in_page(request: Request) -> Response:
    """The sign-in page; a signed-in visitor goes to their home page."""
    session, new = ensure_session(request)
    if session.claims is not None:
        return redirect(home_of(session.claims.actor()))
    identities = demo_identities(request.app.state.runtime) if demo_enabled(request) else []
    oidc = request.app.state.portal_oidc is not None
    response = render(request, "signin.html", session, identities=identities, oidc=oidc)
    if new:
        set_cookie(request, response, session)
    return response


def signed_in(request: Request, claims: Claims) -> Response:
    """A new session for `claims` (never the anonymous one's id: no fixation), then their home page."""
    old = session_of(request)
    if old is not None:
        store(request).end(old.id)
    session = store(request).new(claims)
    response = redirect(home_of(claims.actor()))
    set_cookie(request, response, session)
    return response


@router.post("/signin/demo")
def demo_sign_in(request: Request, form: FormDep) -> Response:
    if not demo_enabled(request):
        raise PageRefused("not_allowed")
    chosen = {identity.key: identity for identity in demo_identities(request.app.state.runtime)}.get(str(form.get("identity")))
    if chosen is None:
        raise PageRefused("not_allowed")
    return signed_in(request, chosen.claims)


@router.post("/signout")
def sign_out(request: Request, form: FormDep) -> Response:
    """End the session on the server (the cookie is worth nothing after) and forget the cookie."""
    session = session_of(request)
    if session is not None:
        store(request).end(session.id)
    response = redirect("/")
    clear_cookie(request, response)
    return response
