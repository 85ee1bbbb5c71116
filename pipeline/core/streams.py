"""What the storage and encryption layers read from: anything with `read`, not a whole file object.

Wrappers (the size limit, the encrypting reader, an upload's part) offer only `read`; naming that
here lets them be passed where a stream is read without claiming they are files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Readable(Protocol):
    """A byte stream read front to back: `read(size)` returns at most `size` bytes, b"" at the end."""

    def read(self, size: int = -1, /) -> bytes: ...


class Seekable(Readable, Protocol):
    """A stream read in any order (a zip is read from its end)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


def copy_stream(source: Readable, write: Callable[[memoryview], object], chunk_bytes: int) -> None:
    """Copy `source` to `write` in chunks through one reused buffer when the source can fill it
    (`readinto`: a file, the encrypting reader), else chunk by chunk as `read` returns them."""
    readinto: Callable[[memoryview], int | None] | None = getattr(source, "readinto", None)
    if readinto is None:
        while chunk := source.read(chunk_bytes):
            write(memoryview(chunk))
        return
    buffer = memoryview(bytearray(chunk_bytes))
    while filled := readinto(buffer):
        write(buffer[:filled])
    if filled is None:  # a non-blocking stream with nothing ready: not a stream this copies
        raise BlockingIOError("source has no data ready")
