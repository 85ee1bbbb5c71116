"""Sealing: a plaintext stream becomes an encrypted object in the store, and back.

The index keeps, for each object, the keyed hash of the plaintext, its size, the key id and the
wrapped data key; the object bytes are never the plaintext.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pipeline.envelope import EncryptingReader, IntegrityError, decrypt
from pipeline.keys import Keyring, WrappedKey
from pipeline.storage import ObjectStore


@dataclass(frozen=True)
class Sealed:
    object_key: str
    size: int
    content_hmac: str
    wrapped: WrappedKey


def seal_context(document_id: str, patient_id: str) -> str:
    """Associated data binding an object to its document and patient: ids only, never patient data."""
    return f"doc:{document_id}|patient:{patient_id}"


def seal(store: ObjectStore, keyring: Keyring, object_key: str, context: str, source: BinaryIO, segment_bytes: int) -> Sealed:
    """Encrypt `source` into `object_key` under a fresh data key, hashing the plaintext on the way."""
    hasher = keyring.hasher()
    reader = EncryptingReader(source, keyring, context, segment_bytes, hasher)
    store.put(object_key, reader)  # type: ignore[arg-type]
    return Sealed(object_key, reader.size, hasher.hexdigest(), reader.header.wrapped)


def unseal(
    store: ObjectStore, keyring: Keyring, object_key: str, context: str, wrapped: WrappedKey | None = None, expected_hmac: str | None = None
) -> Iterator[bytes]:
    """Stream the plaintext of a sealed object, checking the keyed hash at the end when given.

    A mismatch raises IntegrityError after the last chunk: callers that serve bytes must
    treat the stream as failed (the API aborts the response).
    """
    hasher = keyring.hasher()
    with store.open(object_key) as handle:
        for chunk in decrypt(handle, keyring, context, wrapped):
            hasher.update(chunk)
            yield chunk
    if expected_hmac is not None and hasher.hexdigest() != expected_hmac:
        raise IntegrityError("plaintext keyed hash does not match the index")
