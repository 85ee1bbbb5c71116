"""Sign-in with OpenID Connect: the authorization code flow with PKCE (S256), against the configured provider.

Authlib builds the authorization request and exchanges the code (with the PKCE verifier and the client's
credentials); the ID token is then verified like the API's bearer tokens (PyJWT against the provider's JWKS,
fixed algorithms, issuer, audience = our client id, expiry) plus the nonce of this sign-in. Its claims become
the visitor's identity by the API's own mapping (`pipeline.access.tokens.claims_of`: `kind`, `profession`,
`rpps`…). State, nonce and verifier live in the visitor's server-side session only, and are used once.

The provider is reached over https, or plain http on this machine only (a provider under test).
"""

from __future__ import annotations

import functools
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import APIRouter, Request
from starlette.responses import Response

from api.portal.sessions import save, set_cookie
from api.portal.web import PageRefused, ensure_session, redirect
from pipeline.access.tokens import JWKS_ALGORITHMS, LEEWAY_SECONDS, AuthError, claims_of
from pipeline.core.settings import Settings, is_loopback_host

TIMEOUT_SECONDS = 10


class PortalOidc:
    """The configured provider and the two routes of the flow: /signin/oidc and its callback."""

    def __init__(self, issuer: str, client_id: str, client_secret: str | None) -> None:
        parts = urlsplit(issuer)
        if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))):
            raise ValueError("portal_oidc_issuer must be an https:// URL (http:// only to a loopback address)")
        self.issuer, self.client_id, self.client_secret = issuer.rstrip("/"), client_id, client_secret
        self.router = APIRouter(include_in_schema=False)
        self.router.add_api_route("/signin/oidc", self.start, methods=["GET"])
        self.router.add_api_route("/signin/oidc/callback", self.callback, methods=["GET"], name="oidc_callback")

    @classmethod
    def from_settings(cls, settings: Settings) -> PortalOidc | None:
        if not settings.portal_oidc_issuer:
            return None
        return cls(settings.portal_oidc_issuer, settings.portal_oidc_client_id, settings.portal_oidc_client_secret)

    @functools.cached_property
    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once)."""
        response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        if found.get("issuer", "").rstrip("/") != self.issuer:
            raise ValueError("the provider's discovery document names another issuer")
        return found

    @functools.cached_property
    def keys(self) -> jwt.PyJWKClient:
        return jwt.PyJWKClient(self.metadata["jwks_uri"], timeout=TIMEOUT_SECONDS)

    def _client(self, request: Request) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client_id, client_secret=self.client_secret, scope="openid",
            redirect_uri=str(request.url_for("oidc_callback")), code_challenge_method="S256", timeout=TIMEOUT_SECONDS,
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
        )  # fmt: skip

    def start(self, request: Request) -> Response:
        """Send the visitor to the provider with a fresh state, nonce and PKCE challenge."""
        session, new = ensure_session(request)
        verifier, nonce = secrets.token_urlsafe(64), secrets.token_urlsafe(32)
        with self._client(request) as client:
            url, state = client.create_authorization_url(self.metadata["authorization_endpoint"], nonce=nonce, code_verifier=verifier)
        session.oidc = {"state": state, "nonce": nonce, "verifier": verifier}
        save(request, session)
        response = redirect(url)
        if new:
            set_cookie(request, response, session)
        return response

    def callback(self, request: Request) -> Response:
        """Exchange the code (with the verifier), verify the ID token, sign the visitor in as its claims say."""
        from api.portal.auth import signed_in

        session, _ = ensure_session(request)
        expected, session.oidc = session.oidc, {}  # used once, whatever happens next
        save(request, session)
        state, code = request.query_params.get("state", ""), request.query_params.get("code", "")
        if not expected or not code or not secrets.compare_digest(state, expected["state"]):
            raise PageRefused("sign_in_failed", 400)
        try:
            with self._client(request) as client:
                token = client.fetch_token(self.metadata["token_endpoint"], code=code, code_verifier=expected["verifier"])
            claims = claims_of(self._id_token(str(token.get("id_token", "")), expected["nonce"]))
        except (AuthError, AuthlibBaseError, jwt.PyJWTError, httpx.HTTPError, ValueError, KeyError):
            raise PageRefused("sign_in_failed", 400) from None
        return signed_in(request, claims)

    def _id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        kid = jwt.get_unverified_header(id_token).get("kid")
        if kid is not None:
            key = self.keys.get_signing_key(kid)
        else:  # a provider with a single key may leave `kid` out; with several, that token names none of them
            keys = self.keys.get_signing_keys()
            if len(keys) != 1:
                raise ValueError("the ID token names no key and the provider has several")
            key = keys[0]
        payload: dict[str, Any] = jwt.decode(
            id_token, key.key, algorithms=list(JWKS_ALGORITHMS), audience=self.client_id, issuer=self.metadata["issuer"],
            leeway=LEEWAY_SECONDS, options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )  # fmt: skip
        if not secrets.compare_digest(str(payload.get("nonce", "")), nonce):
            raise ValueError("nonce mismatch")
        return payload
