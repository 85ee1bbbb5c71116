"""What an access-log entry is and how a chain of them checks out: the event appended, its canonical encoding
and keyed hash (the encoding's versions are explained in pipeline/access/audit.py), and `verify`, which walks
chains and reports each one's first broken link. Appending is pipeline/access/audit.py's."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from pipeline.core.clock import as_utc
from pipeline.index.models import AuditEntry

NO_PATIENT = "-"
GENESIS = "0" * 64
OUTCOMES = ("allowed", "denied")
# Encoding versions: the first field of an entry's canonical encoding, by the `version` stored with it.
ENCODINGS = {1: "dmp-audit-v1", 2: "dmp-audit-v2"}
CURRENT_VERSION = 2
# The longest break-glass justification kept (the API refuses a longer X-Emergency-Reason).
MAX_JUSTIFICATION = 1000
# Rows fetched per round trip by verify(): memory stays flat whatever the size of the log.
VERIFY_BATCH = 2000

_REQUIRED = ("chain", "actor_id", "actor_kind", "action")
_OPTIONAL = ("profession", "document_id", "told_reason", "justification")
# Column widths of audit_entries: checked here so SQLite (which does not enforce them) and
# PostgreSQL (which does) accept and refuse the same events.
_WIDTHS = {
    "chain": 64, "actor_id": 128, "actor_kind": 32, "profession": 64, "action": 32, "document_id": 36, "reason": 64,
    "told_reason": 64, "justification": MAX_JUSTIFICATION,
}  # fmt: skip


@dataclass(frozen=True)
class AuditEvent:
    """What happened: who (actor id, kind, profession) did what (action) to which document, and the outcome."""

    chain: str  # the patient id, or NO_PATIENT
    actor_id: str
    actor_kind: str
    profession: str | None
    action: str
    document_id: str | None
    outcome: str  # allowed | denied
    reason: str
    emergency: bool = False
    # The code the actor was answered when it is not `reason`: a 404 `not_found` that hid the real reason.
    told_reason: str | None = None
    # The reason the actor gave for a break-glass access (X-Emergency-Reason), as they wrote it; sealed
    # under the record key when appended, not kept where there is none.
    justification: str | None = None


@dataclass(frozen=True)
class BrokenLink:
    """The first entry of a chain that does not check out.

    problem: "hash_mismatch" (the entry's fields or hash were altered), "seq_gap" (entries before it are
    missing: it is not the next position in the chain) or "prev_mismatch" (it does not link to the entry before it).
    """

    chain: str
    seq: int
    entry_id: int
    problem: str


def canonical_encoding(
    *,
    chain: str,
    seq: int,
    at: dt.datetime,
    actor_id: str,
    actor_kind: str,
    profession: str | None,
    action: str,
    document_id: str | None,
    outcome: str,
    reason: str,
    emergency: bool,
    prev_hash: str,
    version: int = CURRENT_VERSION,
    told_reason: str | None = None,
    justification_sealed: bytes | None = None,
) -> bytes:
    """The bytes an entry's hash covers: a JSON array in a fixed field order, ASCII-only, no spaces.

    JSON keeps null apart from "", a boolean apart from a string, and every string delimited, so two
    different entries never encode to the same bytes. The time is UTC with microseconds, so it reads
    back identically from SQLite (naive text) and PostgreSQL (timestamptz in the session's zone).
    Version 2 appends `told_reason` and the sealed justification in hexadecimal (the bytes at rest, so
    checking needs no record key); version 1 has no place for them.
    """
    if version not in ENCODINGS:
        raise ValueError(f"unknown audit encoding version {version!r}")
    if version == 1 and (told_reason is not None or justification_sealed is not None):
        raise ValueError("encoding version 1 holds no told_reason nor justification")
    fields = [
        ENCODINGS[version],
        chain,
        int(seq),
        as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        actor_id,
        actor_kind,
        profession,
        action,
        document_id,
        outcome,
        reason,
        bool(emergency),
        prev_hash,
    ]
    if version >= 2:
        fields += [told_reason, bytes(justification_sealed).hex() if justification_sealed is not None else None]
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def entry_hash(key: bytes, entry: AuditEntry | Row[*tuple[Any, ...]]) -> str:
    encoded = canonical_encoding(
        chain=entry.chain,
        seq=entry.seq,
        at=entry.at,
        actor_id=entry.actor_id,
        actor_kind=entry.actor_kind,
        profession=entry.profession,
        action=entry.action,
        document_id=entry.document_id,
        outcome=entry.outcome,
        reason=entry.reason,
        emergency=entry.emergency,
        prev_hash=entry.prev_hash,
        version=entry.version,
        told_reason=entry.told_reason,
        justification_sealed=entry.justification_sealed,
    )
    return keyed(key, encoded)


def keyed(key: bytes, encoded: bytes) -> str:
    """An entry's hash: HMAC-SHA-256 of its canonical encoding."""
    return hmac.new(key, encoded, hashlib.sha256).hexdigest()


def check_event(event: AuditEvent) -> None:
    """ValueError unless `event` fits an entry: a known outcome, every field of its type and within its column."""
    if event.outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {event.outcome!r}")
    if not isinstance(event.emergency, bool):
        raise ValueError("emergency must be a bool")
    for name, width in _WIDTHS.items():
        value = getattr(event, name)
        if value is None and name in _OPTIONAL:
            continue
        if not isinstance(value, str) or (not value and name in _REQUIRED):
            raise ValueError(f"{name} must be a {'non-empty ' if name in _REQUIRED else ''}string")
        if len(value) > width:
            raise ValueError(f"{name} is longer than {width} characters")


_VERIFY_COLUMNS = (
    AuditEntry.id,
    AuditEntry.chain,
    AuditEntry.seq,
    AuditEntry.at,
    AuditEntry.actor_id,
    AuditEntry.actor_kind,
    AuditEntry.profession,
    AuditEntry.action,
    AuditEntry.document_id,
    AuditEntry.outcome,
    AuditEntry.reason,
    AuditEntry.emergency,
    AuditEntry.prev_hash,
    AuditEntry.entry_hash,
    AuditEntry.version,
    AuditEntry.told_reason,
    AuditEntry.justification_sealed,
)


def _broken_links(rows: Iterable[Row[*tuple[Any, ...]]], key: bytes) -> list[BrokenLink]:
    broken: list[BrokenLink] = []
    current: str | None = None
    expected_seq, expected_prev, skipping = 1, GENESIS, False
    for row in rows:
        if row.chain != current:
            current, expected_seq, expected_prev, skipping = row.chain, 1, GENESIS, False
        if skipping:
            continue
        problem = None
        if not hmac.compare_digest(entry_hash(key, row), row.entry_hash or ""):
            problem = "hash_mismatch"
        elif row.seq != expected_seq:
            problem = "seq_gap"
        elif not hmac.compare_digest(row.prev_hash, expected_prev):
            problem = "prev_mismatch"
        if problem:
            broken.append(BrokenLink(row.chain, row.seq, row.id, problem))
            skipping = True
            continue
        expected_seq, expected_prev = row.seq + 1, row.entry_hash
    return broken


def verify(session: Session, key: bytes, chain: str | None = None) -> list[BrokenLink]:
    """Check every chain (or only `chain`) and return the first broken link of each broken chain.

    Rows are streamed in (chain, seq) order, VERIFY_BATCH at a time (a server-side cursor on
    PostgreSQL) as plain rows, not ORM objects, so memory stays flat for millions of entries.
    A missing entry is reported on the first entry after it (seq_gap).
    """
    query = select(*_VERIFY_COLUMNS).order_by(AuditEntry.chain, AuditEntry.seq)
    if chain is not None:
        query = query.where(AuditEntry.chain == chain)
    result = session.execute(query.execution_options(yield_per=VERIFY_BATCH))
    try:
        return _broken_links(result, key)
    finally:
        result.close()
