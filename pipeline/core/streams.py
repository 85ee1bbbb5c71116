"""What the storage and encryption layers read from: anything with `read`, not a whole file object.

Wrappers (the size limit, the encrypting reader, an upload's part) offer only `read`; naming that
here lets them be passed where a stream is read without claiming they are files.
"""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    """A byte stream read front to back: `read(size)` returns at most `size` bytes, b"" at the end."""

    def read(self, size: int = -1, /) -> bytes: ...


class Seekable(Readable, Protocol):
    """A stream read in any order (a zip is read from its end)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...
