"""Segmented AES-256-GCM envelope: format, round trip, and every tampering failing closed."""

from __future__ import annotations

import hashlib
import io
import struct
import tracemalloc

import pytest

from pipeline.core.envelope import NONCE_PREFIX, TAG, EncryptingReader, IntegrityError, decrypt, read_header

KEY = bytes(range(32))
PREFIX = bytes.fromhex("0102030405060a")
CONTEXT = "doc:d1|patient:p1"
SEGMENT = 64


def _seal(plaintext: bytes, key: bytes = KEY, context: str = CONTEXT, ref: str = "record:r1", prefix: bytes | None = PREFIX) -> bytes:
    return EncryptingReader(io.BytesIO(plaintext), key, ref, context, SEGMENT, nonce_prefix=prefix).read()


def _open(sealed: bytes, key: bytes = KEY, context: str = CONTEXT) -> bytes:
    return b"".join(decrypt(io.BytesIO(sealed), key, context))


def _header_len(sealed: bytes) -> int:
    return 4 + 1 + 4 + NONCE_PREFIX + 1 + sealed[16]


def _segments(sealed: bytes) -> list[bytes]:
    body = sealed[_header_len(sealed) :]
    return [body[i : i + SEGMENT + TAG] for i in range(0, len(body), SEGMENT + TAG)]


# Known answers: fixed key and nonce prefix. Any change to the format changes these digests and
# needs a new format version.
def test_known_answer_header_layout():
    sealed = _seal(b"")
    assert sealed[:16] == b"DMPE" + bytes([1]) + struct.pack(">I", SEGMENT) + PREFIX
    assert sealed[16:17] == bytes([len("record:r1")]) and sealed[17:26] == b"record:r1"


def _by_the_spec(plaintext: bytes) -> bytes:
    """The object built straight from the README's description, with raw AES-GCM."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ref = b"record:r1"
    header = b"DMPE" + bytes([1]) + struct.pack(">I", SEGMENT) + PREFIX + bytes([len(ref)]) + ref
    # Full segments, the last one (full or not) marked final; an empty document is one empty final segment.
    pieces = [plaintext[i : i + SEGMENT] for i in range(0, len(plaintext), SEGMENT)] or [b""]
    out = header
    for index, piece in enumerate(pieces):
        nonce = PREFIX + struct.pack(">IB", index, int(index == len(pieces) - 1))
        out += AESGCM(KEY).encrypt(nonce, piece, header + CONTEXT.encode())
    return out


@pytest.mark.parametrize("plaintext", [b"", b"Compte rendu de sortie", bytes(range(256)) * 3, b"x" * 128])
def test_objects_match_the_documented_format(plaintext):
    assert _seal(plaintext) == _by_the_spec(plaintext)


# Pinned digests: a change to the format must come with a new format version.
KNOWN_DIGESTS = {
    b"": "f6ffacd923c6da19b5bde955eb36d3a7d3150fc98ee3c7b1ed68cc7ebe6a037f",
    b"Compte rendu de sortie": "302a534e37acdbf1738589df0bcdbc5f1f306298f2dedd634fdc626000f6a5ab",
    bytes(range(256)) * 3: "863cd2faf57785662d64d1206ca9d87aece575d434fec016e733b2903c29648c",
}


def test_known_answer_vectors():
    assert {plain: hashlib.sha256(_seal(plain)).hexdigest() for plain in KNOWN_DIGESTS} == KNOWN_DIGESTS


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 640, 1000])
def test_round_trip_at_every_segment_boundary(size):
    plaintext = (bytes(range(256)) * 4)[:size]
    assert _open(_seal(plaintext, prefix=None)) == plaintext


def test_an_empty_document_still_has_one_final_segment():
    assert len(_segments(_seal(b""))) == 1


def test_ciphertext_does_not_contain_the_plaintext():
    assert b"Compte rendu" not in _seal(b"Compte rendu de sortie " * 20)


@pytest.mark.parametrize("position", ["header", "first segment", "last segment", "tag"])
def test_one_flipped_bit_anywhere_fails_closed(position):
    sealed = bytearray(_seal(b"y" * 200))
    header = _header_len(bytes(sealed))
    at = {"header": 8, "first segment": header + 3, "last segment": len(sealed) - TAG - 2, "tag": len(sealed) - 1}[position]
    sealed[at] ^= 0x01
    with pytest.raises(IntegrityError):
        _open(bytes(sealed))


def test_truncation_at_a_segment_boundary_fails_closed():
    sealed = _seal(b"x" * 200)
    segments = _segments(sealed)
    truncated = sealed[: _header_len(sealed)] + b"".join(segments[:2])
    with pytest.raises(IntegrityError):
        _open(truncated)


def test_reordered_segments_fail_closed():
    sealed = _seal(b"a" * 64 + b"b" * 64 + b"c" * 10)
    first, second, last = _segments(sealed)
    with pytest.raises(IntegrityError):
        _open(sealed[: _header_len(sealed)] + second + first + last)


def test_a_segment_spliced_from_another_document_fails_closed():
    mine, other = _seal(b"m" * 200, context="doc:1|patient:1"), _seal(b"o" * 200, context="doc:2|patient:1")
    spliced = mine[: _header_len(mine)] + _segments(other)[0] + b"".join(_segments(mine)[1:])
    with pytest.raises(IntegrityError):
        _open(spliced, context="doc:1|patient:1")


def test_an_object_moved_to_another_document_fails_closed():
    with pytest.raises(IntegrityError):
        _open(_seal(b"z" * 100), context="doc:other|patient:p1")


def test_the_wrong_key_fails_closed():
    with pytest.raises(IntegrityError):
        _open(_seal(b"z" * 100), key=bytes(32))


def test_a_different_key_reference_in_the_header_fails_closed():
    sealed = _seal(b"k" * 100, ref="record:r1")
    forged = sealed.replace(b"record:r1", b"record:r2", 1)
    with pytest.raises(IntegrityError):
        _open(forged)


def test_the_header_names_the_key_but_does_not_carry_it():
    header, _ = read_header(io.BytesIO(_seal(b"h")))
    assert header.key_ref == "record:r1"
    assert KEY not in _seal(b"h")


def test_small_reads_stream_without_buffering_the_whole_input():
    reader = EncryptingReader(io.BytesIO(b"a" * 10_000), KEY, "r", "c", SEGMENT)
    chunks = []
    while chunk := reader.read(100):
        assert len(chunk) <= 100
        chunks.append(chunk)
        assert reader.buffered <= SEGMENT + TAG + 100  # one sealed segment plus the request
    assert _open(b"".join(chunks), context="c") == b"a" * 10_000


class _ReadOnly:
    """A source offering only `read`, in short pieces (a socket, an upload's part)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 7) if size >= 0 else 7)


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 640, 1000])
def test_a_source_without_readinto_seals_to_the_same_object(size):
    plaintext = (bytes(range(256)) * 4)[:size]
    reader = EncryptingReader(_ReadOnly(plaintext), KEY, "record:r1", CONTEXT, SEGMENT, nonce_prefix=PREFIX)
    assert reader.read() == _by_the_spec(plaintext)


@pytest.mark.parametrize("request_size", [1, 15, 80, 81, 1000])
def test_readinto_fills_the_callers_buffer_whole_until_the_end(request_size):
    plaintext = bytes(range(256)) * 3
    reader = EncryptingReader(io.BytesIO(plaintext), KEY, "record:r1", CONTEXT, SEGMENT, nonce_prefix=PREFIX)
    buffer, out = bytearray(request_size), b""
    while filled := reader.readinto(buffer):
        out += buffer[:filled]
        if len(out) < len(_by_the_spec(plaintext)):
            assert filled == request_size
    assert out == _by_the_spec(plaintext)


def test_the_hasher_sees_every_plaintext_byte_once():
    plaintext = bytes(range(256)) * 3
    hasher = hashlib.sha256()
    reader = EncryptingReader(io.BytesIO(plaintext), KEY, "r", "c", SEGMENT, hasher=hasher)
    while reader.read(100):
        pass
    assert hasher.hexdigest() == hashlib.sha256(plaintext).hexdigest() and reader.size == len(plaintext)


def test_a_read_far_larger_than_the_object_returns_the_object_without_a_buffer_that_size():
    reader = EncryptingReader(io.BytesIO(b"Compte rendu de sortie"), KEY, "record:r1", CONTEXT, SEGMENT, nonce_prefix=PREFIX)
    assert reader.read(1 << 50) == _by_the_spec(b"Compte rendu de sortie")


def test_a_part_sized_read_of_a_small_document_allocates_no_part_sized_buffer():
    # boto3 first reads its multipart threshold (8 MiB) from the reader, whatever the document's size.
    # One segment holds the whole document, as the 256 KiB segments hold a usual report.
    reader = EncryptingReader(io.BytesIO(b"x" * 2048), KEY, "record:r1", CONTEXT, 4096, nonce_prefix=PREFIX)
    tracemalloc.start()
    try:
        sealed = reader.read(8 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _open(sealed) == b"x" * 2048
    assert peak < 64 * 1024


class _NothingReady(io.RawIOBase):
    """A non-blocking source with no data ready yet: readinto returns None, not 0 (the end)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):
        return None


def test_a_source_with_nothing_ready_is_refused_rather_than_sealed_as_a_short_document():
    with pytest.raises(BlockingIOError):
        EncryptingReader(_NothingReady(), KEY, "r", "c", SEGMENT).read()
