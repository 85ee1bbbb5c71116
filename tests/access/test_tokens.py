"""pipeline.access.tokens: embedded EdDSA tokens, JWKS-verified tokens, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.access.policy import KINDS, Actor
from pipeline.access.tokens import ACTOR_KINDS, AuthError, Claims, SigningKeyError, TokenVerifier, ensure_signing_key, mint_token
from pipeline.core.settings import Settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RPPS = "10101010101"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(settings: Settings, **overrides: Any) -> dict[str, Any]:
    issued = int(NOW.timestamp())
    payload = {
        "sub": "p-1",
        "kind": "patient",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued,
        "exp": issued + 600,
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def _signing_key(settings: Settings) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(ensure_signing_key(settings).read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _code(verifier: TokenVerifier, header: str | None, now: datetime = NOW) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(header, now=now)
    return caught.value.code


@pytest.fixture
def settings(embedded_settings: Settings) -> Settings:
    return embedded_settings


@pytest.fixture
def verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(settings)


def test_actor_kinds_are_the_policy_kinds(settings: Settings, verifier: TokenVerifier) -> None:
    # Every kind the policy decides on can be carried by a token and comes back as that kind.
    for kind in sorted(KINDS):
        professional = {"profession": "physician", "rpps": RPPS} if kind == "professional" else {}
        token = mint_token(settings, f"{kind}-1", kind, now=NOW, **professional)
        assert verifier.verify(f"Bearer {token}", now=NOW).kind == kind
    assert ACTOR_KINDS == KINDS


def test_mint_then_verify_gives_claims_and_actor(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(
        settings, "doc-7", "professional", profession="physician", specialty="cardiology", rpps=RPPS, facility_id="fac-3", now=NOW
    )
    claims = verifier.verify(f"Bearer {token}", now=NOW + timedelta(minutes=5))
    assert claims == Claims(
        subject="doc-7", kind="professional", profession="physician", specialty="cardiology", rpps=RPPS, facility_id="fac-3"
    )
    assert claims.actor() == Actor(id="doc-7", kind="professional", profession="physician", specialty="cardiology", facility_id="fac-3")


def test_minted_token_carries_the_documented_claims(settings: Settings) -> None:
    token = mint_token(settings, "p-1", "patient", ttl_seconds=120, now=NOW)
    header = jwt.get_unverified_header(token)
    payload = json.loads(_b64url_decode(token.split(".")[1]))
    assert header["alg"] == "EdDSA"
    assert payload == {
        "sub": "p-1",
        "kind": "patient",
        "iss": "dmp-embedded",
        "aud": "dmp-api",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 120,
    }


def test_a_token_accepted_once_is_still_refused_once_expired(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, "p-1", "patient", ttl_seconds=60, now=NOW)
    assert verifier.verify(f"Bearer {token}", now=NOW).subject == "p-1"  # its signature check is now remembered
    assert _code(verifier, f"Bearer {token}", now=NOW + timedelta(seconds=60 + 31)) == "expired_token"


def test_only_a_token_verified_before_is_known_without_its_signature_checked(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, "p-1", "patient", ttl_seconds=60, now=NOW)
    assert verifier.verify_known(f"Bearer {token}", now=NOW) is None  # never verified: left to verify()
    assert verifier.verify(f"Bearer {token}", now=NOW).subject == "p-1"
    assert verifier.verify_known(f"Bearer {token}", now=NOW) == verifier.verify(f"Bearer {token}", now=NOW)
    with pytest.raises(AuthError) as refused:  # known, and still checked for its times
        verifier.verify_known(f"Bearer {token}", now=NOW + timedelta(seconds=60 + 31))
    assert refused.value.code == "expired_token"


def test_expired_token_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, "p-1", "patient", ttl_seconds=60, now=NOW)
    assert _code(verifier, f"Bearer {token}", now=NOW + timedelta(seconds=60 + 31)) == "expired_token"


def test_expiry_has_thirty_seconds_leeway(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, "p-1", "patient", ttl_seconds=60, now=NOW)
    assert verifier.verify(f"Bearer {token}", now=NOW + timedelta(seconds=60 + 29)).subject == "p-1"


def test_token_issued_in_the_future_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    token = mint_token(settings, "p-1", "patient", now=NOW + timedelta(minutes=5))
    assert _code(verifier, f"Bearer {token}") == "invalid_token"


def test_wrong_audience_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    other = Settings(home=settings.home, jwt_audience="another-api")
    token = mint_token(other, "p-1", "patient", now=NOW)
    assert _code(verifier, f"Bearer {token}") == "wrong_audience"


def test_wrong_issuer_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    other = Settings(home=settings.home, jwt_issuer="someone-else")
    token = mint_token(other, "p-1", "patient", now=NOW)
    assert _code(verifier, f"Bearer {token}") == "wrong_issuer"


def test_tampered_payload_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    header, payload, signature = mint_token(settings, "p-1", "patient", now=NOW).split(".")
    claims = json.loads(_b64url_decode(payload))
    claims["sub"] = "p-2"
    forged = ".".join([header, _b64url(json.dumps(claims).encode()), signature])
    assert _code(verifier, f"Bearer {forged}") == "invalid_token"


def test_token_signed_by_another_key_is_refused(tmp_path: Path, verifier: TokenVerifier) -> None:
    stranger = Settings(home=tmp_path / "elsewhere")
    token = mint_token(stranger, "p-1", "patient", now=NOW)
    assert _code(verifier, f"Bearer {token}") == "invalid_token"


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   "])
def test_missing_token_is_refused(verifier: TokenVerifier, header: str | None) -> None:
    assert _code(verifier, header) == "missing_token"


def test_basic_authorization_is_refused(verifier: TokenVerifier) -> None:
    assert _code(verifier, "Basic " + base64.b64encode(b"user:password").decode()) == "missing_token"


def test_garbage_bearer_token_is_refused(verifier: TokenVerifier) -> None:
    assert _code(verifier, "Bearer not-a-jwt") == "invalid_token"
    assert _code(verifier, "Bearer a.b.c") == "invalid_token"


def test_alg_none_token_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    unsigned = f"{header}.{_b64url(json.dumps(_payload(settings)).encode())}."
    assert _code(verifier, f"Bearer {unsigned}") == "invalid_token"


def test_hs256_token_keyed_with_the_public_key_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    public_pem = (
        _signing_key(settings).public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64url(json.dumps(_payload(settings)).encode())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert _code(verifier, f"Bearer {signing_input}.{_b64url(signature)}") == "invalid_token"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_token_without_a_required_claim_is_refused(settings: Settings, verifier: TokenVerifier, claim: str) -> None:
    token = jwt.encode(_payload(settings, **{claim: None}), _signing_key(settings), algorithm="EdDSA")
    assert _code(verifier, f"Bearer {token}") == "invalid_claims"


def test_non_numeric_expiry_is_refused(settings: Settings, verifier: TokenVerifier) -> None:
    token = jwt.encode(_payload(settings, exp=str(int(NOW.timestamp()) + 600)), _signing_key(settings), algorithm="EdDSA")
    assert _code(verifier, f"Bearer {token}") == "invalid_claims"


def test_unknown_kind_is_refused_at_mint(settings: Settings) -> None:
    with pytest.raises(AuthError) as caught:
        mint_token(settings, "x-1", "superuser", now=NOW)
    assert caught.value.code == "invalid_claims"


def test_unknown_kind_is_refused_at_verify(settings: Settings, verifier: TokenVerifier) -> None:
    token = jwt.encode(_payload(settings, kind="superuser"), _signing_key(settings), algorithm="EdDSA")
    assert _code(verifier, f"Bearer {token}") == "invalid_claims"


def test_non_string_claim_is_refused_at_verify(settings: Settings, verifier: TokenVerifier) -> None:
    token = jwt.encode(_payload(settings, facility=["fac-1", "fac-2"]), _signing_key(settings), algorithm="EdDSA")
    assert _code(verifier, f"Bearer {token}") == "invalid_claims"


@pytest.mark.parametrize(
    "extra",
    [{"rpps": RPPS}, {"profession": "physician"}, {"profession": "astrologer", "rpps": RPPS}],
    ids=["no-profession", "no-rpps", "unknown-profession"],
)
def test_incomplete_professional_is_refused_at_mint(settings: Settings, extra: dict[str, str]) -> None:
    with pytest.raises(AuthError) as caught:
        mint_token(settings, "doc-1", "professional", now=NOW, **extra)
    assert caught.value.code == "invalid_claims"


def test_professional_without_rpps_is_refused_at_verify(settings: Settings, verifier: TokenVerifier) -> None:
    token = jwt.encode(_payload(settings, kind="professional", profession="nurse"), _signing_key(settings), algorithm="EdDSA")
    assert _code(verifier, f"Bearer {token}") == "invalid_claims"


@pytest.mark.parametrize(("audience", "code"), [("dmp-api", "expired_token"), ("another-api", "wrong_audience")])
def test_error_messages_carry_no_token_nor_identity(settings: Settings, verifier: TokenVerifier, audience: str, code: str) -> None:
    issuer = Settings(home=settings.home, jwt_audience=audience)
    token = mint_token(issuer, "patient-secret-id", "professional", profession="nurse", rpps="99999999999", now=NOW)
    with pytest.raises(AuthError) as caught:
        verifier.verify(f"Bearer {token}", now=NOW + timedelta(days=1))
    error = caught.value
    text = str(error) + repr(error)
    assert error.code == code
    assert token not in text and "patient-secret-id" not in text and "99999999999" not in text
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # no PyJWT text chained


def test_signing_key_file_is_created_0600_and_reused(settings: Settings) -> None:
    path = ensure_signing_key(settings)
    assert path == settings.resolved_signing_key_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert ensure_signing_key(settings) == path
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging file left behind
    token = mint_token(settings, "p-1", "patient", now=NOW)
    assert TokenVerifier(settings).verify(f"Bearer {token}", now=NOW).subject == "p-1"


def test_group_readable_signing_key_is_refused(settings: Settings) -> None:
    path = ensure_signing_key(settings)
    path.chmod(0o640)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        ensure_signing_key(settings)
    with pytest.raises(SigningKeyError):
        mint_token(settings, "p-1", "patient", now=NOW)
    with pytest.raises(SigningKeyError):
        TokenVerifier(settings)


def test_signing_key_that_is_not_ed25519_is_refused(settings: Settings) -> None:
    path = settings.resolved_signing_key_file()
    path.parent.mkdir(parents=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match="Ed25519"):
        ensure_signing_key(settings)


def test_naive_now_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError):
        mint_token(settings, "p-1", "patient", now=datetime(2025, 3, 1, 12, 0))


# ---------------------------------------------------------------------------------------------
# Production mode: keys from the identity provider's JWKS


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


@pytest.fixture
def idp_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks_url(idp_key: ec.EllipticCurvePrivateKey) -> Iterator[str]:
    document = json.dumps({"keys": [_jwk(idp_key, "idp-1")]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def idp_settings(tmp_path: Path, jwks_url: str) -> Settings:
    return Settings(home=tmp_path / "prod-home", oidc_jwks_url=jwks_url, jwt_issuer="https://idp.example", jwt_audience="dmp-api")


def _idp_token(settings: Settings, key: ec.EllipticCurvePrivateKey, kid: str, **overrides: Any) -> str:
    payload = _payload(settings, kind="professional", profession="pharmacist", rpps=RPPS, **overrides)
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})


def test_jwks_verifier_accepts_the_identity_providers_token(idp_settings: Settings, idp_key: ec.EllipticCurvePrivateKey) -> None:
    verifier = TokenVerifier(idp_settings)
    claims = verifier.verify(f"Bearer {_idp_token(idp_settings, idp_key, 'idp-1')}", now=NOW)
    assert claims.actor() == Actor(id="p-1", kind="professional", profession="pharmacist")
    assert claims.rpps == RPPS
    assert not idp_settings.resolved_signing_key_file().exists()  # production mode creates no local key


@pytest.mark.parametrize("kid", ["idp-1", "unknown-kid"])
def test_jwks_verifier_refuses_a_token_from_another_key(idp_settings: Settings, kid: str) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert _code(TokenVerifier(idp_settings), f"Bearer {_idp_token(idp_settings, stranger, kid)}") == "invalid_token"


def test_jwks_verifier_refuses_an_embedded_token(idp_settings: Settings, settings: Settings) -> None:
    token = mint_token(settings, "p-1", "patient", now=NOW)
    assert _code(TokenVerifier(idp_settings), f"Bearer {token}") == "invalid_token"


def test_jwks_verifier_checks_the_issuer(idp_settings: Settings, idp_key: ec.EllipticCurvePrivateKey) -> None:
    token = _idp_token(idp_settings, idp_key, "idp-1", iss="https://evil.example")
    assert _code(TokenVerifier(idp_settings), f"Bearer {token}") == "wrong_issuer"


def test_unreachable_jwks_is_reported_as_unavailable(tmp_path: Path, idp_key: ec.EllipticCurvePrivateKey) -> None:
    down = Settings(home=tmp_path, oidc_jwks_url="http://127.0.0.1:1/jwks.json")
    assert _code(TokenVerifier(down), f"Bearer {_idp_token(down, idp_key, 'idp-1')}") == "verifier_unavailable"


def test_jwks_over_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="https"):
        TokenVerifier(Settings(home=tmp_path, oidc_jwks_url="http://idp.example/jwks.json"))


def test_mint_is_refused_in_production_mode(idp_settings: Settings) -> None:
    with pytest.raises(SigningKeyError):
        mint_token(idp_settings, "p-1", "patient", now=NOW)
