"""Streaming envelope encryption: AES-256-GCM in fixed-size segments under a per-document key.

Object layout (format version 1): a header, then segments, each `ciphertext || 16-byte tag`.

    header = b"DMPE" | version u8 (1) | segment_size u32 BE | nonce_prefix 7 bytes
             | key_ref_len u8 | key_ref (UTF-8: which key wraps this object's data key)

Segment i (from 0) holds `segment_size` plaintext bytes (the last one may hold fewer, or none for
an empty document) and is sealed with the 12-byte nonce `nonce_prefix || i (u32 BE) || final (u8)`
and the associated data `header || context`, where context names the document and its patient
by id. So truncation (no final segment), reordering (wrong index), splicing from another object
(other header or key) or moving an object to another document (other context) all fail
authentication. Memory stays O(segment) in both directions.

The wrapped data key lives in the index, not in the header: a saved copy of the object must stay
unreadable once the document's key is destroyed (crypto-shredding).
"""

from __future__ import annotations

import io
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.core.streams import Readable

MAGIC = b"DMPE"
VERSION = 1
TAG = 16
NONCE_PREFIX = 7
_FIXED = struct.Struct(">4sBI7s")
# read() with no size, or a larger one than this: gathered in steps, not one buffer of that size.
_DIRECT_READ_MAX = 64 * 1024 * 1024
_READ_STEP = 1024 * 1024

# A segment's plaintext: bytes from a plain `read`, or a view of a reused buffer filled by `readinto`.
Plain = bytes | memoryview


class IntegrityError(Exception):
    """The ciphertext failed authentication or is truncated: never serve it."""


class Hasher(Protocol):
    """A running digest of the plaintext (the keyed hash the index keeps)."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Header:
    segment_size: int
    nonce_prefix: bytes
    key_ref: str

    def encode(self) -> bytes:
        ref = self.key_ref.encode()
        return _FIXED.pack(MAGIC, VERSION, self.segment_size, self.nonce_prefix) + struct.pack(">B", len(ref)) + ref


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def read_exact(source: Readable, size: int) -> bytes:
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
    `nonce_prefix` is for known-answer tests only: a fresh random one is the default.

    Segments are sealed straight into the caller's buffer (`readinto`) or into the bytes that
    `read` returns: no sealed segment is copied again (joining 32 of them per 8 MiB read cost as
    much as the cipher). A source offering `readinto` (a file) is read into two reused segment
    buffers; memory stays two plaintext segments and one sealed one, plus the caller's read.
    """

    def __init__(
        self,
        source: Readable,
        data_key: bytes,
        key_ref: str,
        context: str,
        segment_size: int,
        hasher: Hasher | None = None,
        nonce_prefix: bytes | None = None,
    ) -> None:
        self.header = Header(segment_size, nonce_prefix or secrets.token_bytes(NONCE_PREFIX), key_ref)
        header_bytes = self.header.encode()
        self._aad = header_bytes + context.encode()
        self._aead = AESGCM(data_key)
        self._source = source
        self._readinto: Callable[[memoryview], int | None] | None = getattr(source, "readinto", None)
        # Two plaintext buffers in turn: the segment being sealed and the one read ahead (to know
        # whether the current one is final). Each is made when first needed, as is the spill: a
        # document of one segment (most of them) zeroes one segment's buffer, not three.
        self._plain: list[memoryview | None] | None = [None, None] if self._readinto else None
        self._turn = 0
        self._hasher = hasher
        self._index = 0
        # A sealed segment that did not fit the caller's buffer; `_pending` is its unread tail
        # (the header at first).
        self._spill: memoryview | None = None
        self._pending = memoryview(header_bytes)
        self._next = self._read_plain()
        self._done = False
        self.size = 0

    def _read_plain(self) -> Plain:
        if self._plain is None or self._readinto is None:
            chunk: Plain = read_exact(self._source, self.header.segment_size)
        else:
            buffer = self._plain[self._turn]
            if buffer is None:
                buffer = self._plain[self._turn] = memoryview(bytearray(self.header.segment_size))
            self._turn = 1 - self._turn
            filled, got = 0, None
            while filled < len(buffer) and (got := self._readinto(buffer[filled:])):
                filled += got
            if got is None and filled < len(buffer):  # a non-blocking source with nothing ready: never a short document
                raise BlockingIOError("source has no data ready")
            chunk = buffer[:filled]
        if chunk and self._hasher is not None:
            self._hasher.update(chunk)
        return chunk

    def _seal_into(self, out: memoryview) -> int:
        """Seal the next segment into `out`, or its head if it does not fit (the rest is kept pending)."""
        current = self._next
        self._next = self._read_plain() if len(current) == self.header.segment_size else b""
        final = not self._next
        nonce = _nonce(self.header.nonce_prefix, self._index, final)
        sealed = len(current) + TAG
        if sealed <= len(out):
            self._aead.encrypt_into(nonce, current, self._aad, out[:sealed])
            written = sealed
        else:
            if self._spill is None:
                self._spill = memoryview(bytearray(self.header.segment_size + TAG))
            self._aead.encrypt_into(nonce, current, self._aad, self._spill[:sealed])
            written = len(out)
            out[:] = self._spill[:written]
            self._pending = self._spill[written:sealed]
        self.size += len(current)
        self._index += 1
        self._done = final
        return written

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill `buffer` with the next sealed bytes (fewer only at the end); returns how many."""
        out = memoryview(buffer).cast("B")
        taken = min(len(self._pending), len(out))
        out[:taken] = self._pending[:taken]
        self._pending = self._pending[taken:]
        while taken < len(out) and not self._done:
            taken += self._seal_into(out[taken:])
        return taken

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > _DIRECT_READ_MAX:
            # All of it, or more than a part: gathered in steps rather than a buffer of that size.
            parts: list[bytes] = []
            taken = 0
            while (size < 0 or taken < size) and (part := self.read(_READ_STEP if size < 0 else min(_READ_STEP, size - taken))):
                parts.append(part)
                taken += len(part)
            return b"".join(parts)
        # Sealed straight into the bytes object returned: a BytesIO's buffer, sized by writing its
        # last byte, filled through getbuffer(), and handed over by getvalue(), which CPython
        # does without a copy once no view is left. A copy out of a scratch buffer cost more
        # than half the cipher's time. The buffer is never larger than what is left when that is
        # known: boto3 reads its 8 MiB multipart threshold first, and zeroing 8 MiB for a 2 KiB
        # document cost ~1.5 ms of CPU per document.
        remaining = self._remaining()
        if remaining is not None:
            size = min(size, remaining)
        out = io.BytesIO()
        if size:
            out.seek(size - 1)
            out.write(b"\0")
        with out.getbuffer() as view:
            filled = self.readinto(view)
        out.truncate(filled)
        return out.getvalue()

    def _remaining(self) -> int | None:
        """The sealed bytes left to read, when known: once the segment read ahead is the final one
        (shorter than a segment), or all is sealed; None while more full segments may follow."""
        if self._done:
            return len(self._pending)
        if len(self._next) < self.header.segment_size:
            return len(self._pending) + len(self._next) + TAG
        return None

    @property
    def buffered(self) -> int:
        """Sealed bytes waiting to be read (at most one segment)."""
        return len(self._pending)

    def readable(self) -> bool:
        return True


def read_header(source: BinaryIO) -> tuple[Header, bytes]:
    """Parse an object's header; returns it and its exact bytes (part of every segment's AAD)."""
    fixed = read_exact(source, _FIXED.size)
    if len(fixed) != _FIXED.size:
        raise IntegrityError("object too short for a header")
    magic, version, segment_size, prefix = _FIXED.unpack(fixed)
    if magic != MAGIC or version != VERSION or segment_size <= 0:
        raise IntegrityError("unknown object format")
    length = read_exact(source, 1)
    ref = read_exact(source, length[0]) if length else b""
    if not length or len(ref) != length[0]:
        raise IntegrityError("truncated header")
    try:
        header = Header(segment_size, prefix, ref.decode())
    except UnicodeDecodeError:
        raise IntegrityError("corrupt header") from None
    return header, header.encode()


def decrypt(source: BinaryIO, data_key: bytes, context: str) -> Iterator[bytes]:
    """Yield the plaintext of an encrypted object segment by segment, authenticating each.

    Raises IntegrityError on any tampering, truncation, wrong key or wrong context.
    """
    header, header_bytes = read_header(source)
    aead = AESGCM(data_key)
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
