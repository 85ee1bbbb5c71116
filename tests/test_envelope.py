"""Segmented AES-256-GCM envelope: round trip, tamper detection, bounded memory."""

import io

import pytest

from pipeline.envelope import EncryptingReader, IntegrityError, decrypt
from pipeline.keys import Keyring, load_keyring


@pytest.fixture
def keyring(tmp_path) -> Keyring:
    return load_keyring(tmp_path / "keys.json", create=True)


def _seal(keyring, plaintext: bytes, context="doc:1|patient:1", segment=64) -> bytes:
    return EncryptingReader(io.BytesIO(plaintext), keyring, context, segment).read()


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 640, 1000])
def test_round_trip_at_every_segment_boundary(keyring, size):
    plaintext = bytes(range(256)) * 4
    plaintext = plaintext[:size]
    sealed = _seal(keyring, plaintext)
    assert b"".join(decrypt(io.BytesIO(sealed), keyring, "doc:1|patient:1")) == plaintext


def test_ciphertext_does_not_contain_the_plaintext(keyring):
    plaintext = b"Compte rendu de sortie " * 20
    assert b"Compte rendu" not in _seal(keyring, plaintext)


def test_truncation_at_a_segment_boundary_is_detected(keyring):
    sealed = _seal(keyring, b"x" * 200)
    header_len = len(sealed) - (3 * (64 + 16) + (8 + 16))
    truncated = sealed[: header_len + 2 * (64 + 16)]
    with pytest.raises(IntegrityError):
        b"".join(decrypt(io.BytesIO(truncated), keyring, "doc:1|patient:1"))


def test_a_flipped_bit_is_detected(keyring):
    sealed = bytearray(_seal(keyring, b"y" * 200))
    sealed[-5] ^= 1
    with pytest.raises(IntegrityError):
        b"".join(decrypt(io.BytesIO(bytes(sealed)), keyring, "doc:1|patient:1"))


def test_an_object_moved_to_another_document_does_not_decrypt(keyring):
    sealed = _seal(keyring, b"z" * 100, context="doc:1|patient:1")
    with pytest.raises(IntegrityError):
        b"".join(decrypt(io.BytesIO(sealed), keyring, "doc:2|patient:1"))


def test_every_object_gets_a_fresh_data_key(keyring):
    first = EncryptingReader(io.BytesIO(b"same"), keyring, "c", 64)
    second = EncryptingReader(io.BytesIO(b"same"), keyring, "c", 64)
    assert first.header.wrapped.blob != second.header.wrapped.blob
    assert first.read() != second.read()


def test_small_reads_stream_without_buffering_the_whole_input(keyring):
    reader = EncryptingReader(io.BytesIO(b"a" * 10_000), keyring, "c", 64)
    chunks = []
    while chunk := reader.read(100):
        assert len(chunk) <= 100
        chunks.append(chunk)
        # Never more than one sealed segment plus the request is held.
        assert len(reader._buffer) <= 64 + 16 + 100
    assert b"".join(decrypt(io.BytesIO(b"".join(chunks)), keyring, "c")) == b"a" * 10_000
