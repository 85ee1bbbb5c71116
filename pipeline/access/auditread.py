"""Reading audit chains back (pipeline/access/audit.py writes them): a page of a chain's entries, filtered in
the query by what the caller says to leave out, and the break-glass justifications of entries opened."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from sqlalchemy import ColumnElement, and_, not_, or_, select
from sqlalchemy.orm import Session

from pipeline.core.sealedfields import SealedFieldError, Sealer, justification_context
from pipeline.index.models import AuditEntry

log = logging.getLogger(__name__)
MAX_PAGE = 1000


def entries_for(
    session: Session,
    chain: str,
    *,
    actor_id: str | None = None,
    actor_kind: str | None = None,
    hidden_documents: Collection[str] = (),
    hidden_when: ColumnElement[bool] | None = None,
    hidden_actor: tuple[str, str] | None = None,
    reader: tuple[str, str] | None = None,
    limit: int = 100,
    offset: int = 0,
    after_seq: int | None = None,
    newest_first: bool = False,
) -> list[AuditEntry]:
    """A page of a chain's entries, oldest first (newest first if asked: the portal's pages), filtered in the query
    so that pages and counts hold only what is returned. Access control is the caller's: it says what to leave out.

    `actor_id` (and `actor_kind`): only the entries of that actor (a professional reads their own).
    `hidden_documents`: entries about these documents are left out, except those of `reader` (kind, id).
    `hidden_when`: the same, the hidden documents named by a condition on the entry instead of a list of ids
    (`pipeline.access.accesslog.hidden_condition`: evaluated in the query, however many they are).
    `hidden_actor` (kind, id): entries of that actor are left out.
    `after_seq`: keyset paging, the entries after that position in the page order (with `offset` 0 for the next page).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    if offset < 0:
        raise ValueError("offset must not be negative")
    query = select(AuditEntry).where(AuditEntry.chain == chain)
    if after_seq is not None:
        query = query.where(AuditEntry.seq < after_seq if newest_first else AuditEntry.seq > after_seq)
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    if actor_kind is not None:
        query = query.where(AuditEntry.actor_kind == actor_kind)
    if hidden_actor is not None:
        query = query.where(not_(_by(hidden_actor)))
    if hidden_documents:
        # NOT IN alone would also drop the entries about no document (NULL is never NOT IN anything).
        shown = or_(AuditEntry.document_id.is_(None), AuditEntry.document_id.not_in(sorted(hidden_documents)))
        query = query.where(or_(shown, _by(reader)) if reader is not None else shown)
    if hidden_when is not None:
        query = query.where(or_(not_(hidden_when), _by(reader)) if reader is not None else not_(hidden_when))
    query = query.order_by(AuditEntry.seq.desc() if newest_first else AuditEntry.seq).limit(limit).offset(offset)
    return list(session.scalars(query))


def open_justifications(entries: Iterable[AuditEntry], record_key: bytes | None) -> dict[int, str | None]:
    """The break-glass justifications of entries of one chain, by entry id, opened under the chain's record
    key. None where there is none, where the record key is gone (a destroyed record), or where the sealed
    bytes do not open in that entry (moved or altered: `verify` reports the entry)."""
    sealer = Sealer(record_key) if record_key is not None else None
    opened: dict[int, str | None] = {}
    for entry in entries:
        opened[entry.id] = None
        if entry.justification_sealed is None or sealer is None:
            continue
        try:
            opened[entry.id] = sealer.open(entry.justification_sealed, justification_context(entry.chain, entry.seq))
        except SealedFieldError:
            log.error("the justification of audit entry %s does not open under its record key", entry.id)
    return opened


def _by(actor: tuple[str, str]) -> ColumnElement[bool]:
    kind, actor_id = actor
    return and_(AuditEntry.actor_kind == kind, AuditEntry.actor_id == actor_id)
