"""What every portal page shares: templates, headers, the signed-in visitor, CSRF-checked forms, refusals.

Pages are server-rendered (Jinja2, autoescaped) and run no script: the policy below allows none.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.portal.i18n import LANG_COOKIE, LANGUAGES, day, language_of, moment, translations
from api.portal.labels import (
    ACTION_LABELS,
    CLASS_LABELS,
    ITEM_STATE_LABELS,
    KIND_LABELS,
    PATIENT_TYPE_LABELS,
    REASON_LABELS,
    RELATION_LABELS,
    STATUS_LABELS,
    UPLOAD_ERROR_LABELS,
)
from api.portal.sessions import PortalSession, SessionStore, session_of, set_cookie
from pipeline.access.gate import PROFESSIONAL_KINDS
from pipeline.access.policy import Actor, ActorKind
from pipeline.access.vocabulary import NOT_FOUND, NotFound, Reason
from pipeline.runtime import Runtime

# No script at all, styles and images from here only, frames only of this origin's documents (a PDF),
# forms posted here only, and no page of another origin may frame these.
PORTAL_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": PORTAL_POLICY, "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), auto_reload=False)
_env.globals.update(
    CLASS_LABELS=CLASS_LABELS,
    ACTION_LABELS=ACTION_LABELS,
    REASON_LABELS=REASON_LABELS,
    KIND_LABELS=KIND_LABELS,
    RELATION_LABELS=RELATION_LABELS,
    PATIENT_TYPE_LABELS=PATIENT_TYPE_LABELS,
    STATUS_LABELS=STATUS_LABELS,
    ITEM_STATE_LABELS=ITEM_STATE_LABELS,
    UPLOAD_ERROR_LABELS=UPLOAD_ERROR_LABELS,
)


class SignInRequired(Exception):
    """The page needs a signed-in visitor (of the right kind): answered by the sign-in page."""


class RecordChoiceRequired(Exception):
    """A legal representative has not chosen whose record to read yet: answered by the choice page."""


class PageRefused(Exception):
    """A refusal told as a page: 404 for what the visitor may not learn exists, 403 with the policy's reason."""

    def __init__(self, told: Reason | NotFound | str, status: int | None = None) -> None:
        super().__init__(str(told))
        self.told = str(told)
        self.status = status or (404 if told == NOT_FOUND else 403)


@dataclass
class Visit:
    """One request of a signed-in visitor."""

    request: Request
    session: PortalSession
    actor: Actor

    @property
    def record(self) -> str:
        """The record the patient's pages are about: the patient's own, or the one a legal representative chose."""
        return self.session.record or self.actor.id

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.request.app.state.runtime
        return rt


def store(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.portal_sessions
    return sessions


def ensure_session(request: Request) -> tuple[PortalSession, bool]:
    """The visitor's session, made (anonymous) when there is none; True when the cookie must be set."""
    session = session_of(request)
    if session is not None:
        return session, False
    return store(request).new(), True


def visit(request: Request) -> Visit:
    session = session_of(request)
    if session is None or session.claims is None:
        raise SignInRequired
    return Visit(request, session, session.claims.actor())


def patient_visit(request: Request) -> Visit:
    """A signed-in patient (their own record is the one whose id is their subject), or a legal representative
    who chose the record of a patient they represent (the policy decides what they may read of it)."""
    current = visit(request)
    if current.actor.kind == ActorKind.LEGAL_REPRESENTATIVE:
        if current.session.record is None:
            raise RecordChoiceRequired
        return current
    if current.actor.kind != ActorKind.PATIENT:
        raise PageRefused(NOT_FOUND)
    return current


def representative_visit(request: Request) -> Visit:
    current = visit(request)
    if current.actor.kind != ActorKind.LEGAL_REPRESENTATIVE:
        raise PageRefused(NOT_FOUND)
    return current


def professional_visit(request: Request) -> Visit:
    current = visit(request)
    if current.actor.kind not in PROFESSIONAL_KINDS:
        raise PageRefused(NOT_FOUND)
    return current


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token matches the session's; a refusal page otherwise."""
    form = await request.form()
    session = session_of(request)
    token = form.get("csrf")
    if session is None or not isinstance(token, str) or not secrets.compare_digest(token, session.csrf):
        raise PageRefused("csrf_failed")
    return form


def render(request: Request, template: str, session: PortalSession | None, status: int = 200, **context: Any) -> HTMLResponse:
    """A page in the visitor's language, with the portal's headers."""
    language = language_of(request)
    texts = translations(language)
    actor = session.claims.actor() if session is not None and session.claims is not None else None
    html = _env.get_template(template).render(
        _=texts.gettext, ngettext=texts.ngettext, lang=language, languages=LANGUAGES, actor=actor,
        csrf=session.csrf if session is not None else "", path=request.url.path,
        day=lambda value: day(value, language), moment=lambda value: moment(value, language), **context,
    )  # fmt: skip
    response = HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, "Content-Language": language})
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, path="/", samesite="lax", secure=request.url.scheme == "https")
    return response


def page(visit: Visit, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return render(visit.request, template, visit.session, status, **context)


def redirect(url: str) -> RedirectResponse:
    """After a POST: see the result with a GET (303), with the portal's headers."""
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def refused_page(request: Request, refusal: PageRefused) -> Response:
    session, new = ensure_session(request)
    response = render(request, "refused.html", session, refusal.status, told=refusal.told)
    if new:
        set_cookie(request, response, session)
    return response


VisitDep = Annotated[Visit, Depends(visit)]
PatientDep = Annotated[Visit, Depends(patient_visit)]
RepresentativeDep = Annotated[Visit, Depends(representative_visit)]
ProfessionalDep = Annotated[Visit, Depends(professional_visit)]
FormDep = Annotated[FormData, Depends(checked_form)]
