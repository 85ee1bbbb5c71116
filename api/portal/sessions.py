"""Portal sessions: a random id in an HttpOnly, SameSite=Lax cookie (Secure over https), the rest on the server.

Server-side, so signing out ends the session for good: a copied cookie is worthless once its session is gone.
The store is this process's memory (bounded, idle and absolute lifetimes), which fits the embedded mode and a
single API process; several API processes behind one name need sticky sessions (a shared store, a table of the
index with the state sealed, is the next step).

Every session, signed in or not, has a CSRF token (the synchronizer-token pattern): each form carries it in a
hidden field and a POST without the session's token is refused (api/portal/web.py `checked_form`).
Signing in replaces the session id (no fixation).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from pipeline.access.tokens import Claims

COOKIE = "dmp_portal"
SECURE_COOKIE = "__Host-dmp_portal"  # over https: the prefix makes the browser refuse it without Secure and Path=/
IDLE_SECONDS = 30 * 60
MAX_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000
EMERGENCY_SECONDS = 15 * 60  # a break-glass reason covers this record's reads for so long, then is asked again


@dataclass
class PortalSession:
    id: str
    csrf: str
    created: float
    seen: float
    claims: Claims | None = None
    record: str | None = None  # a legal representative's chosen record (patient id)
    # patient id -> (reason, until): the break-glass reason a professional gave for that record.
    emergency: dict[str, tuple[str, float]] = field(default_factory=dict)
    # What the OpenID Connect flow under way remembers: state, nonce, PKCE verifier.
    oidc: dict[str, str] = field(default_factory=dict)

    def emergency_reason(self, patient_id: str) -> str | None:
        held = self.emergency.get(patient_id)
        if held is None or held[1] < time.monotonic():
            self.emergency.pop(patient_id, None)
            return None
        return held[0]


class SessionStore:
    """Sessions by id, thread-safe (sync routes run in a thread pool)."""

    def __init__(self) -> None:
        self._sessions: dict[str, PortalSession] = {}
        self._lock = threading.Lock()

    def new(self, claims: Claims | None = None) -> PortalSession:
        now = time.monotonic()
        session = PortalSession(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, seen=now, claims=claims)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._evict(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> PortalSession | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > IDLE_SECONDS or now - session.created > MAX_SECONDS:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _evict(self, now: float) -> None:
        stale = [k for k, s in self._sessions.items() if now - s.seen > IDLE_SECONDS or now - s.created > MAX_SECONDS]
        for key in stale or list(self._sessions)[: MAX_SESSIONS // 10]:  # full of live ones: the oldest tenth goes
            del self._sessions[key]


def cookie_name(request: Request) -> str:
    return SECURE_COOKIE if request.url.scheme == "https" else COOKIE


def session_of(request: Request) -> PortalSession | None:
    store: SessionStore = request.app.state.portal_sessions
    return store.get(request.cookies.get(cookie_name(request)))


def set_cookie(request: Request, response: Response, session: PortalSession) -> None:
    response.set_cookie(
        cookie_name(request), session.id, max_age=MAX_SECONDS, path="/", httponly=True, samesite="lax",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(cookie_name(request), path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
