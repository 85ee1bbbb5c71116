"""The web portal: server-rendered pages for patients and professionals, from `/`.

Pages call the same feature functions as the JSON routes (the access gate, listing, controls, the access
log), so every page view and action is decided by `decide()` and audited exactly as the API call it mirrors.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from api.portal import auth, contributions, docs, patient, privacy, pro, represent
from api.portal.oidc import PortalOidc
from api.portal.sessions import SessionStore
from api.portal.web import PageRefused, RecordChoiceRequired, SignInRequired, redirect, refused_page
from pipeline.core.settings import Settings

STATIC = Path(__file__).parent / "static"


def mount_portal(app: FastAPI, settings: Settings) -> None:
    """Add the portal's pages, its static files and the self-hosted /docs to `app`."""
    app.state.portal_sessions = SessionStore(app.state)
    app.state.portal_oidc = PortalOidc.from_settings(settings)
    for module in (auth, represent, patient, contributions, privacy, pro, docs):
        app.include_router(module.router)
    if app.state.portal_oidc is not None:
        app.include_router(app.state.portal_oidc.router)
    app.mount("/static/portal", StaticFiles(directory=STATIC), name="portal-static")
    docs.mount_swagger(app)

    async def to_sign_in(request: Request, _: Exception) -> Response:
        return redirect("/")

    async def to_record_choice(request: Request, _: Exception) -> Response:
        return redirect("/patient/records")

    async def refused(request: Request, refusal: Exception) -> Response:
        assert isinstance(refusal, PageRefused)
        return refused_page(request, refusal)

    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(RecordChoiceRequired, to_record_choice)
    app.add_exception_handler(PageRefused, refused)
