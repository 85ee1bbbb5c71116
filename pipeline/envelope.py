"""Streaming envelope encryption: AES-256-GCM in fixed-size segments under a per-document key.

Object layout: a versioned header, then segments, each `ciphertext || 16-byte tag`.

    header = b"DMPE" | version u8 | segment_size u32 | nonce_prefix 7B
             | key_id_len u8 | key_id | wrapped_len u16 | wrapped data key

Segment i is sealed with nonce `nonce_prefix || i (u32) || final (u8)` and associated data
`header || context`, where context names the document and the patient by id. So truncation
(no final segment), reordering (wrong index), splicing from another object (other header) or
moving an object to another document (other context) all fail authentication. Memory stays
O(segment) in both directions.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.keys import Keyring, WrappedKey

MAGIC = b"DMPE"
VERSION = 1
TAG = 16
_FIXED = struct.Struct(">4sBI7s")


class IntegrityError(Exception):
    """The ciphertext failed authentication or is truncated: never serve it."""


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class Header:
    segment_size: int
    nonce_prefix: bytes
    wrapped: WrappedKey

    def encode(self) -> bytes:
        key_id = self.wrapped.key_id.encode()
        return (
            _FIXED.pack(MAGIC, VERSION, self.segment_size, self.nonce_prefix)
            + struct.pack(">B", len(key_id))
            + key_id
            + struct.pack(">H", len(self.wrapped.blob))
            + self.wrapped.blob
        )


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def read_exact(source: BinaryIO, size: int) -> bytes:
    """Read up to `size` bytes, looping over short reads; fewer only at end of stream."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class EncryptingReader:
    """A read-only file object yielding the encrypted object for a plaintext stream.

    Storage clients read it in parts (S3 multipart upload, file copy), so the plaintext is
    never held whole. `hasher` (if given) sees every plaintext byte; `size` counts them.
    """

    def __init__(
        self,
        source: BinaryIO,
        keyring: Keyring,
        context: str,
        segment_size: int,
        hasher: Hasher | None = None,
    ) -> None:
        data_key = keyring.new_data_key()
        self.header = Header(segment_size, secrets.token_bytes(7), keyring.wrap(data_key, context))
        self._header_bytes = self.header.encode()
        self._aad = self._header_bytes + context.encode()
        self._aead = AESGCM(data_key)
        self._source = source
        self._hasher = hasher
        self._index = 0
        self._buffer = bytearray(self._header_bytes)
        self._next = self._read_plain()
        self._done = False
        self.size = 0

    def _read_plain(self) -> bytes:
        chunk = read_exact(self._source, self.header.segment_size)
        if chunk and self._hasher is not None:
            self._hasher.update(chunk)
        return chunk

    def _seal_next(self) -> None:
        current = self._next
        self._next = self._read_plain() if len(current) == self.header.segment_size else b""
        final = not self._next
        nonce = _nonce(self.header.nonce_prefix, self._index, final)
        self._buffer += self._aead.encrypt(nonce, current, self._aad)
        self.size += len(current)
        self._index += 1
        self._done = final

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            self._seal_next()
        if size < 0 or size >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True


def _parse_header(source: BinaryIO) -> tuple[Header, bytes]:
    fixed = read_exact(source, _FIXED.size)
    if len(fixed) != _FIXED.size:
        raise IntegrityError("object too short for a header")
    magic, version, segment_size, prefix = _FIXED.unpack(fixed)
    if magic != MAGIC or version != VERSION or segment_size <= 0:
        raise IntegrityError("unknown object format")
    (kid_len,) = struct.unpack(">B", read_exact(source, 1) or b"\0")
    key_id = read_exact(source, kid_len)
    raw_len = read_exact(source, 2)
    if len(key_id) != kid_len or len(raw_len) != 2:
        raise IntegrityError("truncated header")
    (wrapped_len,) = struct.unpack(">H", raw_len)
    blob = read_exact(source, wrapped_len)
    if len(blob) != wrapped_len:
        raise IntegrityError("truncated header")
    header = Header(segment_size, prefix, WrappedKey(key_id.decode(), blob))
    return header, header.encode()


def decrypt(source: BinaryIO, keyring: Keyring, context: str, wrapped: WrappedKey | None = None) -> Iterator[bytes]:
    """Yield the plaintext of an encrypted object segment by segment, authenticating each.

    `wrapped` is the index's copy of the data key (authoritative once keys are rotated);
    without it the header's copy is used. Raises IntegrityError on any tampering,
    truncation or wrong context.
    """
    header, header_bytes = _parse_header(source)
    try:
        aead = AESGCM(keyring.unwrap(wrapped or header.wrapped, context))
    except InvalidTag:
        raise IntegrityError("data key does not unwrap for this document") from None
    aad = header_bytes + context.encode()
    sealed_size = header.segment_size + TAG
    current = read_exact(source, sealed_size)
    index = 0
    while True:
        following = read_exact(source, sealed_size) if len(current) == sealed_size else b""
        final = not following
        try:
            yield aead.decrypt(_nonce(header.nonce_prefix, index, final), current, aad)
        except InvalidTag:
            raise IntegrityError(f"segment {index} failed authentication") from None
        if final:
            return
        current, index = following, index + 1
