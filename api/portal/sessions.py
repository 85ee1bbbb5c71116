"""Portal sessions: a random id in an HttpOnly, SameSite=Lax cookie (Secure over https), the rest on the server.

Server-side, so signing out ends the session for good: a copied cookie is worthless once its session is gone.
The sessions live in the index (pipeline/index/websessions.py), so every API process (`dmp api --workers N`)
sees the same ones and a sign-out in one ends the session in all. The row is found by a keyed hash of the
id (a dump of the index holds no usable cookie) and its content (CSRF token, claims, the chosen record,
break-glass reasons, the OpenID Connect flow under way) is sealed under a key derived from the index's
keyed-hash secret, bound to that hash. Idle and absolute lifetimes; expired rows are purged as new ones come.

Every session, signed in or not, has a CSRF token (the synchronizer-token pattern): each form carries it in a
hidden field and a POST without the session's token is refused (api/portal/web.py `checked_form`).
Signing in replaces the session id (no fixation).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response

from pipeline.access.tokens import Claims
from pipeline.core.sealedfields import SealedFieldError, Sealer
from pipeline.index import websessions
from pipeline.runtime import Runtime

COOKIE = "dmp_portal"
SECURE_COOKIE = "__Host-dmp_portal"  # over https: the prefix makes the browser refuse it without Secure and Path=/
IDLE_SECONDS = 30 * 60
MAX_SECONDS = 8 * 3600
TOUCH_SECONDS = 60  # a visit is written back at most once a minute: reads stay reads
EMERGENCY_SECONDS = 15 * 60  # a break-glass reason covers this record's reads for so long, then is asked again
_SEAL_LABEL = b"dmp-portal-session-seal-v1"
_ID_LABEL = b"dmp-portal-session-id-v1"


@dataclass
class PortalSession:
    id: str
    csrf: str
    created: float  # wall-clock seconds: several processes read them
    seen: float
    claims: Claims | None = None
    record: str | None = None  # a legal representative's chosen record (patient id)
    # patient id -> (reason, until): the break-glass reason a professional gave for that record.
    emergency: dict[str, tuple[str, float]] = field(default_factory=dict)
    # What the OpenID Connect flow under way remembers: state, nonce, PKCE verifier.
    oidc: dict[str, str] = field(default_factory=dict)

    def emergency_reason(self, patient_id: str) -> str | None:
        held = self.emergency.get(patient_id)
        if held is None or held[1] < time.time():
            self.emergency.pop(patient_id, None)
            return None
        return held[0]

    def content(self) -> str:
        claims = asdict(self.claims) if self.claims is not None else None
        return json.dumps({"csrf": self.csrf, "claims": claims, "record": self.record, "emergency": self.emergency, "oidc": self.oidc})

    @classmethod
    def of(cls, session_id: str, content: str, created: float, seen: float) -> PortalSession:
        data: dict[str, Any] = json.loads(content)
        claims = Claims(**data["claims"]) if data["claims"] is not None else None
        emergency = {k: (str(v[0]), float(v[1])) for k, v in data["emergency"].items()}
        return cls(session_id, data["csrf"], created, seen, claims, data["record"], emergency, dict(data["oidc"]))


def _moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class SessionStore:
    """Sessions in the index, by keyed hash of their id; the runtime is the app's (made at its start)."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._keys: tuple[bytes, bytes] | None = None

    @property
    def _rt(self) -> Runtime:
        rt: Runtime = self._state.runtime
        return rt

    def _hash_and_sealer(self, session_id: str) -> tuple[str, Sealer]:
        if self._keys is None:  # derived, so the keyed-hash secret never serves two primitives
            secret = self._rt.hmac_secret
            self._keys = hmac.new(secret, _ID_LABEL, hashlib.sha256).digest(), hmac.new(secret, _SEAL_LABEL, hashlib.sha256).digest()
        id_key, seal_key = self._keys
        return hmac.new(id_key, session_id.encode(), hashlib.sha256).hexdigest(), Sealer(seal_key)

    @staticmethod
    def _expiry(session: PortalSession) -> dt.datetime:
        return _moment(min(session.seen + IDLE_SECONDS, session.created + MAX_SECONDS))

    def new(self, claims: Claims | None = None) -> PortalSession:
        """A new session (anonymous, or signed in as `claims`), kept in the index."""
        now = time.time()
        session = PortalSession(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, seen=now, claims=claims)
        id_hash, sealer = self._hash_and_sealer(session.id)
        with self._rt.sessions() as db:
            websessions.add(db, id_hash, sealer.seal(session.content(), f"portal_session|{id_hash}"), _moment(now), self._expiry(session))
        return session

    def get(self, session_id: str | None) -> PortalSession | None:
        """The live session of this cookie value; None when unknown, ended or expired (or not opening)."""
        if not session_id or len(session_id) > 128:
            return None
        now = time.time()
        id_hash, sealer = self._hash_and_sealer(session_id)
        with self._rt.sessions() as db:
            row = websessions.find(db, id_hash, _moment(now))
            if row is None:
                return None
            try:
                content = sealer.open(row.content_sealed, f"portal_session|{id_hash}") or ""
            except SealedFieldError:
                return None
            session = PortalSession.of(session_id, content, row.created_at.timestamp(), row.seen_at.timestamp())
            if now - session.seen >= TOUCH_SECONDS:
                session.seen = now
                websessions.touch(db, id_hash, _moment(now), self._expiry(session))
        return session

    def save(self, session: PortalSession) -> None:
        """Write back what a page changed in the session (the chosen record, a break-glass reason, the OIDC flow)."""
        session.seen = time.time()
        id_hash, sealer = self._hash_and_sealer(session.id)
        with self._rt.sessions() as db:
            content = sealer.seal(session.content(), f"portal_session|{id_hash}")
            websessions.touch(db, id_hash, _moment(session.seen), self._expiry(session), content)

    def end(self, session_id: str) -> None:
        """End the session everywhere: its row is deleted."""
        id_hash, _ = self._hash_and_sealer(session_id)
        with self._rt.sessions() as db:
            websessions.remove(db, id_hash)

    def purge(self) -> int:
        """Delete the expired sessions' rows; how many went."""
        with self._rt.sessions() as db:
            return websessions.purge_expired(db, _moment(time.time()))


def cookie_name(request: Request) -> str:
    return SECURE_COOKIE if request.url.scheme == "https" else COOKIE


def session_of(request: Request) -> PortalSession | None:
    """The request's session, looked up once per request (pages and their dependencies share it)."""
    cached: PortalSession | None = getattr(request.state, "portal_session", None)
    if cached is not None:
        return cached
    store: SessionStore = request.app.state.portal_sessions
    session = store.get(request.cookies.get(cookie_name(request)))
    if session is not None:
        request.state.portal_session = session
    return session


def save(request: Request, session: PortalSession) -> None:
    """Keep what the request changed in its session."""
    store: SessionStore = request.app.state.portal_sessions
    store.save(session)


def set_cookie(request: Request, response: Response, session: PortalSession) -> None:
    response.set_cookie(
        cookie_name(request), session.id, max_age=MAX_SECONDS, path="/", httponly=True, samesite="lax",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(cookie_name(request), path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
