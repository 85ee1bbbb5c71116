"""Copying streams: through one reused buffer when the source can fill it, else as read returns."""

from __future__ import annotations

import io

import pytest

from pipeline.core.streams import copy_stream


class _ReadOnly:
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


class _NothingReady:
    def readinto(self, buffer: memoryview) -> None:
        return None

    def read(self, size: int = -1) -> bytes:
        return b""


@pytest.mark.parametrize("source_type", [io.BytesIO, _ReadOnly])
def test_copy_stream_copies_every_byte_in_order(source_type):
    data = bytes(range(256)) * 41
    out = io.BytesIO()
    copy_stream(source_type(data), out.write, 1000)
    assert out.getvalue() == data


def test_copy_stream_refuses_a_source_with_nothing_ready_rather_than_stopping_short():
    with pytest.raises(BlockingIOError):
        copy_stream(_NothingReady(), io.BytesIO().write, 1000)
