"""Reading and destroying stored documents: the only place that turns a document row into bytes."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import select

from pipeline.core.keys import KeyProviderError
from pipeline.core.sealing import data_key, seal_context, unseal
from pipeline.index.models import Document
from pipeline.index.recordkeys import OpenRecordKey
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
    return SealedDocument.of(document).unsealed(rt, record)


def read_whole(rt: Runtime, document: Document) -> bytes:
    """A document's whole plaintext, decrypted and verified before it is answered (`read_document`, joined)."""
    return b"".join(read_document(rt, document))


@dataclass(frozen=True)
class SealedDocument:
    """What reading a live document's bytes takes from its row, as plain values: safe in another thread (an ORM
    instance is not, its session may expire or close it meanwhile)."""

    id: str
    patient_id: str
    object_key: str
    wrapped_key: bytes
    content_hmac: str | None

    @classmethod
    def of(cls, document: Document) -> SealedDocument:
        assert document.wrapped_key is not None  # a shredded document is DocumentGone before this
        return cls(document.id, document.patient_id, document.object_key, document.wrapped_key, document.content_hmac)

    def unsealed(self, rt: Runtime, record: OpenRecordKey) -> Iterator[bytes]:
        """The plaintext, streamed (`pipeline.core.sealing.unseal`), under its record's key."""
        key = data_key(record.key, self.wrapped_key, self.id)
        return unseal(rt.store, self.object_key, key, seal_context(self.id, self.patient_id), rt.hasher(), self.content_hmac)

    def whole(self, rt: Runtime, record: OpenRecordKey) -> bytes:
        return b"".join(self.unsealed(rt, record))


class ReadAhead:
    """A small document's bytes read while its access is being audited: the storage GET, decryption and integrity check
    overlap the audit entry's insert and commit (a round trip and a WAL flush), instead of following them.

    `start` is given to the access gate (`check(..., meanwhile=…)`), which calls it once the policy has allowed the
    access and before the entry is appended; `body` then answers the bytes, read ahead if they were, else read now.
    Nothing read ahead is served before the gate returns, that is before the entry is committed: a refused or failed
    append raises from the gate, and the bytes read ahead are dropped unseen. Not read ahead: a document over `limit`
    bytes (streamed: a whole one would sit in memory), and one whose record key this process does not hold unwrapped
    (reading it takes a connection of the index, while the access holds one)."""

    def __init__(self, rt: Runtime, limit: int) -> None:
        self._rt, self._limit = rt, limit
        self._ahead: tuple[str, Future[bytes]] | None = None

    def start(self, document: Document) -> None:
        """Begin reading `document` in the runtime's read-ahead threads, if it is small and its record key at hand."""
        if document.size > self._limit or document.wrapped_key is None:
            return
        record = self._rt.record_keys.cached(document.record_key_id)
        if record is not None:
            # In the request's context: what the read logs (an integrity failure) keeps its request id.
            read = contextvars.copy_context().run
            self._ahead = (document.id, self._rt.read_ahead.submit(read, SealedDocument.of(document).whole, self._rt, record))

    def body(self, document: Document) -> bytes:
        """`document`'s bytes (`read_whole`): those read ahead for it, else read now. Raises as `read_whole`."""
        if self._ahead is not None and self._ahead[0] == document.id:
            return self._ahead[1].result()
        return read_whole(self._rt, document)


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
