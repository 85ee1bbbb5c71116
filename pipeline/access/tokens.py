"""Bearer tokens: who is calling, as a `pipeline.access.policy.Actor` (the API checks one on every request).

Two modes, chosen by `Settings.oidc_jwks_url`:

- embedded (unset): tokens are EdDSA (Ed25519) JWTs signed with a local key file
  (`Settings.resolved_signing_key_file()`, created mode 0600 on first use, refused if group or world
  can read it, like the master key file in `pipeline.core.keys`). `mint_token` issues them.
- production (set): tokens come from the identity provider; their keys are fetched from its JWKS
  (RS256, ES256 or EdDSA only), over HTTPS (plain HTTP only to a loopback address, for tests).

Every token must carry a valid signature, `iss` = `Settings.jwt_issuer`, `aud` containing
`Settings.jwt_audience`, `exp` in the future (30 s leeway) and `sub`. The algorithm lists are fixed
here, never taken from the token: "none" and HMAC are never accepted.

Errors are `AuthError` with a stable `code`. Messages never contain the token nor any claim value:
claims carry identities (subject, RPPS number, facility).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.access.policy import KINDS, PROFESSIONS, Actor, ActorKind
from pipeline.core.identity import MAX_ACTOR_ID, is_identifier
from pipeline.core.secretfile import is_private, write_private
from pipeline.core.settings import Settings, is_loopback_host

ACTOR_KINDS: frozenset[str] = KINDS  # the `kind` claim names one of the policy's actor kinds

ERROR_CODES = frozenset(
    {"missing_token", "invalid_token", "expired_token", "wrong_audience", "wrong_issuer", "invalid_claims", "verifier_unavailable"}
)

EMBEDDED_ALGORITHMS = ("EdDSA",)
JWKS_ALGORITHMS = ("RS256", "ES256", "EdDSA")
LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 16 * 1024
# The most characters of each identity claim: the width of the index column it reaches (audit_entries.actor_id
# and profession, documents.source for the facility), or of its peers for claims only the policy reads.
# Each must be printable ASCII (OIDC subjects are ASCII): a longer or stranger claim is `invalid_claims`,
# never a value the database refuses later.
CLAIM_WIDTHS = {"sub": MAX_ACTOR_ID, "profession": 64, "specialty": 64, "rpps": 64, "facility": 128}
JWKS_TIMEOUT_SECONDS = 10
_REQUIRED = ["exp", "iss", "aud", "sub"]
_OPTIONAL_STRINGS = ("profession", "specialty", "rpps", "facility")


class AuthError(Exception):
    """Authentication failed. `code` is stable snake_case (one of ERROR_CODES); the message is safe to log."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"AuthError({self.code!r}, {self.message!r})"


class SigningKeyError(Exception):
    """The embedded signing key file is unreadable, malformed, not Ed25519, or too permissive."""


@dataclass(frozen=True)
class Claims:
    subject: str
    kind: str
    profession: str | None = None
    specialty: str | None = None
    rpps: str | None = None
    facility_id: str | None = None

    def actor(self) -> Actor:
        return Actor(
            id=self.subject, kind=ActorKind(self.kind), profession=self.profession, specialty=self.specialty, facility_id=self.facility_id
        )


# ---------------------------------------------------------------------------------------------
# The embedded signing key


def ensure_signing_key(settings: Settings) -> Path:
    """The embedded signing key file: created (Ed25519, PKCS#8 PEM, mode 0600, atomically, never
    overwriting) when missing, then checked. Raises SigningKeyError if it is group/world readable or bad."""
    path = settings.resolved_signing_key_file()
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            _create_signing_key(path)
    _load_private_key(path)
    return path


def _create_signing_key(path: Path) -> None:
    """Write the key aside (0600), then link it into place: os.link fails if the name exists, so
    concurrent first runs agree on one key and nobody reads a half-written file."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    write_private(path, pem, replace=False)


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        private = is_private(path)
    except FileNotFoundError:
        raise SigningKeyError(f"signing key file {path} does not exist") from None
    if not private:
        raise SigningKeyError(f"signing key file {path} is readable by group or others; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise SigningKeyError(f"signing key file {path} is unreadable or malformed ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key file {path} does not hold an Ed25519 private key")
    return key


# ---------------------------------------------------------------------------------------------
# Claims


def _check_claims(subject: Any, kind: Any, optional: Mapping[str, Any]) -> None:
    """The identity claims, the same rules at mint and at verify. Raises AuthError("invalid_claims")."""
    if not is_identifier(subject, CLAIM_WIDTHS["sub"]):
        raise AuthError("invalid_claims", f"subject must be 1 to {CLAIM_WIDTHS['sub']} printable ASCII characters")
    if not isinstance(kind, str) or kind not in ACTOR_KINDS:
        raise AuthError("invalid_claims", "kind is missing or not a known actor kind")
    for name in _OPTIONAL_STRINGS:
        value = optional.get(name)
        if value is not None and not is_identifier(value, CLAIM_WIDTHS[name]):
            raise AuthError("invalid_claims", f"claim {name} must be 1 to {CLAIM_WIDTHS[name]} printable ASCII characters when present")
    if kind == "professional":
        if optional.get("profession") is None:
            raise AuthError("invalid_claims", "a professional token needs a profession")
        if optional.get("rpps") is None:
            raise AuthError("invalid_claims", "a professional token needs an RPPS number")


def _timestamp(now: datetime | None) -> float:
    if now is None:
        return datetime.now(UTC).timestamp()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.timestamp()


def mint_token(
    settings: Settings,
    subject: str,
    kind: str,
    *,
    profession: str | None = None,
    specialty: str | None = None,
    rpps: str | None = None,
    facility_id: str | None = None,
    ttl_seconds: int = 3600,
    now: datetime | None = None,
) -> str:
    """An embedded-mode token (EdDSA). Raises AuthError("invalid_claims") for an unknown kind, a
    professional without profession or RPPS, or an unknown profession; SigningKeyError in
    production mode (tokens then come from the identity provider) or for a bad key file."""
    if settings.oidc_jwks_url:
        raise SigningKeyError("tokens are issued by the identity provider when oidc_jwks_url is set")
    if type(ttl_seconds) is not int or ttl_seconds <= 0:  # a bool is an int to isinstance
        raise ValueError("ttl_seconds must be a positive integer")
    optional = {"profession": profession, "specialty": specialty, "rpps": rpps, "facility": facility_id}
    _check_claims(subject, kind, optional)
    if kind == "professional" and profession not in PROFESSIONS:
        raise AuthError("invalid_claims", "unknown profession")
    issued = int(_timestamp(now))
    payload: dict[str, Any] = {"sub": subject, "kind": kind}
    payload.update({name: value for name, value in optional.items() if value is not None})
    payload.update({"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": issued, "exp": issued + ttl_seconds})
    key = _load_private_key(ensure_signing_key(settings))
    return jwt.encode(payload, key, algorithm="EdDSA")


# ---------------------------------------------------------------------------------------------
# Verification


def _check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))):
        return
    raise ValueError("oidc_jwks_url must be an https:// URL (http:// only to a loopback address)")


# Any whitespace (str.isspace's, Unicode's): one C-level scan, not a Python step per character of every request's token.
_WHITESPACE = re.compile(r"\s")


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header or not authorization_header.strip():
        raise AuthError("missing_token", "no Authorization header")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("missing_token", "the Authorization header is not a Bearer token")
    token = token.strip()
    if not token:
        raise AuthError("missing_token", "the Bearer token is empty")
    if len(token) > MAX_TOKEN_CHARS or _WHITESPACE.search(token) is not None or token.count(".") != 2:
        raise AuthError("invalid_token", "the token is malformed")
    return token


def _number(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError("invalid_claims", f"claim {name} must be a number")
    return float(value)


def _check_times(payload: Mapping[str, Any], now: float) -> None:
    exp = _number(payload, "exp")
    if exp is None:  # also required at decode; kept here so no path skips it
        raise AuthError("invalid_claims", "the token has no expiry")
    if exp <= now - LEEWAY_SECONDS:
        raise AuthError("expired_token", "the token has expired")
    nbf = _number(payload, "nbf")
    if nbf is not None and nbf > now + LEEWAY_SECONDS:
        raise AuthError("invalid_token", "the token is not valid yet")
    iat = _number(payload, "iat")
    if iat is not None and iat > now + LEEWAY_SECONDS:
        raise AuthError("invalid_token", "the token was issued in the future")


VERIFIED_TTL_SECONDS = 60.0
VERIFIED_MAX = 10_000


class TokenVerifier:
    """Checks Bearer tokens. Build once per process: the embedded public key is read once, the
    JWKS is cached by PyJWKClient (refetched on an unknown key id, at most every 30 s)."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._jwks: jwt.PyJWKClient | None = None
        self._public_key: Ed25519PublicKey | None = None
        if settings.oidc_jwks_url:
            _check_jwks_url(settings.oidc_jwks_url)
            self._jwks = jwt.PyJWKClient(settings.oidc_jwks_url, timeout=JWKS_TIMEOUT_SECONDS)
        else:
            self._public_key = _load_private_key(ensure_signing_key(settings)).public_key()
        # Signature checks already passed, by token: a client sends the same token with every request.
        # Times and claims are still checked on every use; an entry lives VERIFIED_TTL_SECONDS at most, so a
        # key withdrawn from the JWKS stops being honoured within that time.
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is None:
            return self._public_key, list(EMBEDDED_ALGORITHMS)
        try:
            jwk = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise AuthError("verifier_unavailable", "the identity provider's keys could not be fetched") from None
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "no usable signing key for this token") from None
        if jwk.algorithm_name not in JWKS_ALGORITHMS:
            raise AuthError("invalid_token", "the signing key's algorithm is not accepted")
        return jwk.key, [jwk.algorithm_name]

    def _decode(self, token: str) -> dict[str, Any]:
        """Signature, issuer and audience checked; AuthError otherwise."""
        key, algorithms = self._key_for(token)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": _REQUIRED,
                    # times are checked below against `now`, with strict types
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError:
            raise AuthError("invalid_claims", "the token lacks a required claim (exp, iss, aud or sub)") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong_audience", "the token is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong_issuer", "the token is not from the expected issuer") from None
        except (jwt.exceptions.InvalidSubjectError, jwt.exceptions.InvalidJTIError):
            raise AuthError("invalid_claims", "the token has a malformed claim") from None
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is malformed or its signature does not verify") from None
        if not isinstance(payload, dict):
            raise AuthError("invalid_token", "the token payload is not an object")
        return payload

    def verify(self, authorization_header: str | None, now: datetime | None = None) -> Claims:
        """The caller's claims from an `Authorization: Bearer <token>` header, or AuthError."""
        token = _bearer_token(authorization_header)
        payload = self._known(token)
        if payload is None:
            payload = self._decode(token)
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.clear()  # crude but bounded: the next requests re-verify
            self._verified[token] = (time.monotonic(), payload)
        _check_times(payload, _timestamp(now))
        return claims_of(payload)

    def verify_known(self, authorization_header: str | None, now: datetime | None = None) -> Claims | None:
        """`verify` for a token whose signature passed within VERIFIED_TTL_SECONDS, None for any other: nothing
        fetched nor signature checked, so nothing that blocks (the API calls it in its event loop and leaves
        the other tokens to `verify` in a thread). AuthError as `verify` for a malformed header or expired token."""
        payload = self._known(_bearer_token(authorization_header))
        if payload is None:
            return None
        _check_times(payload, _timestamp(now))
        return claims_of(payload)

    def _known(self, token: str) -> dict[str, Any] | None:
        cached = self._verified.get(token)
        return cached[1] if cached is not None and time.monotonic() - cached[0] < VERIFIED_TTL_SECONDS else None


def claims_of(payload: Mapping[str, Any]) -> Claims:
    """The identity of a verified token's payload: `sub`, `kind`, and for a professional `profession` and `rpps`
    (`specialty`, `facility` optional). The same mapping for the API's bearer tokens and the portal's OpenID
    Connect ID tokens (api/portal/oidc.py). AuthError("invalid_claims") when they are missing or malformed."""
    _check_claims(payload.get("sub"), payload.get("kind"), payload)
    return Claims(
        subject=payload["sub"],
        kind=payload["kind"],
        profession=payload.get("profession"),
        specialty=payload.get("specialty"),
        rpps=payload.get("rpps"),
        facility_id=payload.get("facility"),
    )
