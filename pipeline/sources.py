"""Source credentials: the API keys hospitals, labs and the insurer push over HTTP with.

A key reads `dmpk_<key id>_<secret>`: the key id finds the row, the secret is checked against a
keyed hash (HMAC-SHA-256 under a key derived from the key file's secret), compared in constant
time. The secret is shown once, when the key is made, and never stored. What a source may submit
follows from its kind: hospitals and labs send documents, the insurer sends reimbursement feeds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.index.models import Source

SOURCE = re.compile(r"^(hospital|lab|insurer):([A-Za-z0-9][A-Za-z0-9._-]{0,63})$")
KEY_PREFIX = "dmpk_"
MAX_KEY_CHARS = 256
# What each kind of source may submit (docs/domain.md: a lab pushes no reimbursement lines, the insurer no documents).
SCOPES: dict[str, frozenset[str]] = {
    "hospital": frozenset({"documents"}),
    "lab": frozenset({"documents"}),
    "insurer": frozenset({"feeds"}),
}


class SourceError(ValueError):
    """The --source value is not KIND:ID with a known kind."""


class CredentialError(Exception):
    """The API key is missing, malformed, unknown or revoked. The text never holds the key."""


class SourceExists(Exception):
    """The source already has a key in use."""


@dataclass(frozen=True)
class SourceIdentity:
    """An authenticated source."""

    id: str
    kind: str

    def may_submit(self, what: str) -> bool:
        """True when this source may submit `what` ("documents" or "feeds")."""
        return what in SCOPES.get(self.kind, frozenset())


def parse_source(value: str) -> tuple[str, str]:
    """(kind, id) of a source written KIND:ID; SourceError if it is not one."""
    match = SOURCE.match(value or "")
    if not match:
        raise SourceError("--source must be hospital:ID, lab:ID or insurer:ID (ID: letters, digits, . _ -)")
    return match.group(1), match.group(2)


def _credential_key(hmac_secret: bytes) -> bytes:
    """The key of the secrets' hashes, derived so the keyed-hash secret serves nothing else twice."""
    return hmac.new(hmac_secret, b"dmp-source-credentials-v1", hashlib.sha256).digest()


def _secret_hash(hmac_secret: bytes, key_id: str, secret: str) -> str:
    message = key_id.encode() + b"\0" + secret.encode()
    return hmac.new(_credential_key(hmac_secret), message, hashlib.sha256).hexdigest()


def is_api_key(token: str) -> bool:
    """An API key, as opposed to a JWT: the ingestion routes take only these."""
    return token.startswith(KEY_PREFIX)


def add_source(session: Session, hmac_secret: bytes, source_id: str) -> str:
    """Create `source_id`'s key (or a new one after a revocation) and return it; it is not stored.

    Raises SourceError for a malformed id, SourceExists when the source has a key in use.
    """
    parse_source(source_id)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = session.get(Source, source_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if row is not None and row.revoked_at is None:
        raise SourceExists(f"{source_id} already has an active key (revoke it first: dmp sources revoke {source_id})")
    if row is None:
        row = Source(id=source_id)
        session.add(row)
    row.key_id, row.secret_hash = key_id, _secret_hash(hmac_secret, key_id, secret)
    row.created_at, row.revoked_at = dt.datetime.now(dt.UTC), None
    session.commit()
    return f"{KEY_PREFIX}{key_id}_{secret}"


def revoke_source(session: Session, source_id: str) -> bool:
    """Revoke the source's key at once; False when it had no key in use."""
    done = session.execute(
        update(Source).where(Source.id == source_id, Source.revoked_at.is_(None)).values(revoked_at=dt.datetime.now(dt.UTC))
    )
    session.commit()
    return bool(done.rowcount)


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.id)))


def authenticate(session: Session, hmac_secret: bytes, api_key: str) -> SourceIdentity:
    """The source holding `api_key`, or CredentialError."""
    if len(api_key) > MAX_KEY_CHARS or not is_api_key(api_key):
        raise CredentialError("not a source API key")
    _, key_id, secret = (api_key.split("_", 2) + ["", ""])[:3]
    row = session.scalars(select(Source).where(Source.key_id == key_id)).one_or_none() if key_id and secret else None
    # Hash even when no row matched, so the answer takes as long for an unknown key id.
    expected = row.secret_hash if row is not None else "0" * 64
    matches = hmac.compare_digest(_secret_hash(hmac_secret, key_id, secret), expected)
    if row is None or not matches or row.revoked_at is not None:
        raise CredentialError("unknown, wrong or revoked API key")
    kind, _ = parse_source(row.id)
    return SourceIdentity(row.id, kind)
