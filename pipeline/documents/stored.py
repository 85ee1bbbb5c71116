"""Reading and destroying stored documents: the only place that turns a document row into bytes."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from sqlalchemy import select

from pipeline.core.keys import KeyProviderError
from pipeline.core.sealing import data_key, seal_context, unseal
from pipeline.index.models import Document
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


class DocumentGone(Exception):
    """The document was shredded (or its record destroyed): its bytes can no longer be read."""


def read_document(rt: Runtime, document: Document) -> Iterator[bytes]:
    """Stream a document's plaintext, authenticated segment by segment and checked against its keyed hash."""
    if document.wrapped_key is None:
        raise DocumentGone(document.id)
    try:
        record = rt.record_keys.get(document.record_key_id)
    except KeyProviderError:
        raise DocumentGone(document.id) from None
    key = data_key(record.key, document.wrapped_key, document.id)
    return unseal(rt.store, document.object_key, key, seal_context(document.id, document.patient_id), rt.hasher(), document.content_hmac)


def shred_document(rt: Runtime, document_id: str) -> bool:
    """Crypto-shred one document: destroy its wrapped data key, then delete its object.

    Key first: once it is gone, any copy of the object (a backup, a replica) is unreadable,
    and a crash before the object's deletion leaves only ciphertext nobody can open.
    """
    with rt.sessions() as session:
        document = session.get(Document, document_id)
        if document is None or not document.live:
            return False
        document.wrapped_key, document.shredded_at = None, dt.datetime.now(dt.UTC)
        object_key = document.object_key
        session.commit()
    rt.store.delete(object_key)
    log.info("document %s shredded", document_id)
    return True


def destroy_record(rt: Runtime, patient_id: str) -> int:
    """Destroy a whole record: its record key first (every document unreadable at once), then its
    documents' wrapped keys and objects. Returns how many documents were removed."""
    rt.record_keys.destroy(patient_id)
    with rt.sessions() as session:
        ids = session.scalars(select(Document.id).where(Document.patient_id == patient_id, Document.live)).all()
    return sum(shred_document(rt, document_id) for document_id in ids)
