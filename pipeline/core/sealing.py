"""Sealing documents: data keys under record keys, objects encrypted into the store, and back.

The index keeps, for each document, the keyed hash of the plaintext, its size, the record key id,
the wrapped data key and the object key; the object bytes are never the plaintext.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.core.envelope import EncryptingReader, Hasher, IntegrityError, decrypt
from pipeline.core.keys import new_key, open_key, seal_key
from pipeline.core.storage import ObjectStore
from pipeline.core.streams import Readable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sealed:
    object_key: str
    size: int
    content_hmac: str | None  # None when sealed without a hasher


def seal_context(document_id: str, patient_id: str) -> str:
    """Associated data binding an object to its document and patient: ids only, never patient data."""
    return f"doc:{document_id}|patient:{patient_id}"


def new_data_key(wrapping_key: bytes, document_id: str) -> tuple[bytes, bytes]:
    """A fresh data key and its wrapped form (under a record key), bound to the document id."""
    key = new_key()
    return key, seal_key(wrapping_key, key, f"doc:{document_id}")


def data_key(wrapping_key: bytes, wrapped: bytes, document_id: str) -> bytes:
    return open_key(wrapping_key, wrapped, f"doc:{document_id}")


def seal(
    store: ObjectStore,
    key: bytes,
    key_ref: str,
    object_key: str,
    context: str,
    source: Readable,
    segment_bytes: int,
    hasher: Hasher | None,
) -> Sealed:
    """Encrypt `source` into `object_key` under `key`, hashing the plaintext on the way if `hasher`
    is given (None when the caller already holds the keyed hash of these exact bytes)."""
    reader = EncryptingReader(source, key, key_ref, context, segment_bytes, hasher)
    store.put(object_key, reader)
    return Sealed(object_key, reader.size, hasher.hexdigest() if hasher is not None else None)


def unseal(
    store: ObjectStore, object_key: str, key: bytes, context: str, hasher: Hasher, expected_hmac: str | None = None
) -> Iterator[bytes]:
    """Stream the plaintext of a sealed object, then check its keyed hash against the index.

    Each segment is authenticated before it is yielded; a keyed-hash mismatch at the end raises
    IntegrityError, which callers serving bytes must turn into an aborted response. Both
    failures are logged with the object key only.
    """
    try:
        with store.open(object_key) as handle:
            for chunk in decrypt(handle, key, context):
                hasher.update(chunk)
                yield chunk
        if expected_hmac is not None and hasher.hexdigest() != expected_hmac:
            raise IntegrityError("plaintext keyed hash does not match the index")
    except IntegrityError as failure:
        log.error("integrity failure reading %s: %s", object_key, failure)
        raise
