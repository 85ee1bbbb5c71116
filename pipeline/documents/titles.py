"""Document titles, sealed at rest (pipeline/core/sealedfields.py): a waiting item's under its batch key,
an indexed document's under its record key."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pipeline.core.keys import KeyProviderError, WrappedKey
from pipeline.core.sealedfields import (
    SealedFieldError,
    Sealer,
    batch_key_context,
    document_title_context,
    item_title_context,
    open_text,
    seal_text,
)
from pipeline.index.models import Batch, BatchItem, Document
from pipeline.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy import Row

log = logging.getLogger(__name__)


def item_title(rt: Runtime, item: BatchItem) -> str | None:
    """The manifest title of a waiting item, opened with its batch's key (unwrapped once per batch and process)."""
    if item.title_sealed is None:
        return None

    def unwrap() -> bytes:
        with rt.sessions() as session:
            batch = session.get(Batch, item.batch_id)
        if batch is None or batch.wrapped_key is None or batch.master_key_id is None:
            raise KeyProviderError(f"batch {item.batch_id} has no key")
        return rt.keys.unwrap(WrappedKey(batch.master_key_id, batch.wrapped_key), batch_key_context(item.batch_id))

    return open_text(rt.batch_keys.get(item.batch_id, unwrap), item.title_sealed, item_title_context(item.id))


def seal_title(record_key: bytes, title: str | None, document_id: str, patient_id: str) -> bytes | None:
    """A document's title sealed under its record key, for `Document.title_sealed`."""
    return seal_text(record_key, title, document_title_context(document_id, patient_id))


def document_titles(rt: Runtime, documents: Iterable[Document | Row[*tuple[Any, ...]]]) -> dict[str, str | None]:
    """The titles of `documents` (Documents, or rows with their columns) by id, each record key unwrapped once
    (one per patient, cached per process).

    A title whose record key was destroyed, or that does not open, is None: it is gone with its record.
    """
    sealers: dict[str, Sealer | None] = {}
    titles: dict[str, str | None] = {}
    for document in documents:
        titles[document.id] = None
        if document.title_sealed is None:
            continue
        if document.record_key_id not in sealers:
            try:
                sealers[document.record_key_id] = Sealer(rt.record_keys.get(document.record_key_id).key)
            except KeyProviderError:
                sealers[document.record_key_id] = None
        sealer = sealers[document.record_key_id]
        if sealer is not None:
            try:
                titles[document.id] = sealer.open(document.title_sealed, document_title_context(document.id, document.patient_id))
            except SealedFieldError:
                log.error("the title of document %s does not open under its record key", document.id)
    return titles
