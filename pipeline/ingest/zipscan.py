"""What an uploaded zip leaves behind as it streams into the store, to check and read it cheaply.

The hostile-archive check (pipeline/ingest/archive.py) looks at the first bytes of every entry
for a nested zip. For an uploaded zip, reading them back would mean a ranged GET per entry, or
fetching the whole upload again; instead `EntryHeads` watches the bytes as they pass (it is fed
every chunk on the way to the store) and keeps, for each local entry header, a few of the
entry's compressed bytes. It only follows what it can follow without inflating whole entries:
a data descriptor (sizes written after the data), a ZIP64 local header or anything unexpected
stops it, and the check reads those entries back from the store as before.

`KeptEnds` keeps the zip's first and last bytes, where its manifest and central directory
usually are, so that opening the stored zip needs no GET at all for a batch of ordinary size.
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO

from pipeline.storage import SeekableView

# signature, version, flags, method, time, date, crc, compressed size, size, name length, extra length
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DATA_DESCRIPTOR = 0x08
_ZIP64_SIZE = 0xFFFFFFFF
# Compressed bytes kept per entry: a deflate stream's block header and first symbols fit in far less.
KEEP_BYTES = 1024


class EntryHeads:
    """Fed a zip's bytes in order (`update`), answers the first bytes of an entry's content (`head`)."""

    def __init__(self) -> None:
        self.stopped = False
        self._offset = 0  # stream offset of the first byte of _pending
        self._pending = bytearray()  # a local header being gathered
        self._entry: tuple[int, int] | None = None  # (header offset, method) of the entry whose data passes now
        self._remaining = 0  # bytes of that entry's data still to pass
        self._kept = bytearray()
        self._entries: dict[int, tuple[int, bytes]] = {}  # header offset -> (method, first compressed bytes)

    def update(self, chunk: bytes) -> None:
        data = memoryview(chunk)
        while not self.stopped:
            if self._remaining:
                if not data:
                    return
                data = self._pass_data(data)
                continue
            need = self._header_size()
            if need is None:
                return
            if len(self._pending) < need:
                if not data:
                    return
                take = need - len(self._pending)
                self._pending += data[:take]
                data = data[take:]
                continue
            self._begin_entry()

    def _header_size(self) -> int | None:
        """Bytes of the local header being gathered (its fixed part until that is in); None once stopped."""
        if len(self._pending) < _LOCAL_HEADER.size:
            return _LOCAL_HEADER.size
        signature, _, flags, _, _, _, _, compressed, _, name_length, extra_length = _LOCAL_HEADER.unpack_from(self._pending)
        if signature != _LOCAL_SIGNATURE or flags & _DATA_DESCRIPTOR or compressed == _ZIP64_SIZE:
            self.stopped = True  # the central directory, or an entry only a full read can follow
            return None
        return _LOCAL_HEADER.size + name_length + extra_length

    def _begin_entry(self) -> None:
        _, _, _, method, _, _, _, compressed, _, _, _ = _LOCAL_HEADER.unpack_from(self._pending)
        self._entry = (self._offset, method)
        self._offset += len(self._pending)
        self._pending.clear()
        self._kept = bytearray()
        self._remaining = compressed
        if not compressed:
            self._end_entry()

    def _pass_data(self, data: memoryview) -> memoryview:
        passing = min(self._remaining, len(data))
        if len(self._kept) < KEEP_BYTES:
            self._kept += data[: min(passing, KEEP_BYTES - len(self._kept))]
        self._remaining -= passing
        self._offset += passing
        if not self._remaining:
            self._end_entry()
        return data[passing:]

    def _end_entry(self) -> None:
        assert self._entry is not None
        offset, method = self._entry
        self._entries[offset] = (method, bytes(self._kept))
        self._entry = None

    def head(self, info: zipfile.ZipInfo, size: int = 4) -> bytes | None:
        """The first `size` bytes of the entry `info` (from the central directory), or None when they
        did not pass here in a form read the same way the entry will be: the caller reads them back."""
        seen = self._entries.get(info.header_offset)
        if seen is None or seen[0] != info.compress_type:
            return None
        kept = seen[1][: info.compress_size]
        whole = len(kept) == info.compress_size
        if info.compress_type == zipfile.ZIP_STORED:
            return kept[:size] if whole or len(kept) >= size else None
        if info.compress_type != zipfile.ZIP_DEFLATED:
            return None
        try:
            first = zlib.decompressobj(-zlib.MAX_WBITS).decompress(kept, size)
        except zlib.error:
            return b""  # not inflatable: a bad document for validation, as a full read would find
        return first if whole or len(first) >= size else None


class KeptEnds:
    """Keeps the first and last `keep` bytes of a stream as it passes (`update`), so that reading a
    stored zip back (`reader`) finds its end record, central directory and first entries (where
    the manifest usually is) in memory instead of in ranged GETs; any other read goes to `remote`."""

    def __init__(self, keep: int) -> None:
        self.keep, self.size = keep, 0
        self.head = bytearray()
        self.tail = bytearray()

    @classmethod
    def known(cls, size: int, head: bytes, tail: bytes) -> KeptEnds:
        """The ends of a stored object of `size` bytes, already read."""
        ends = cls(max(len(head), len(tail)))
        ends.size, ends.head, ends.tail = size, bytearray(head), bytearray(tail)
        return ends

    def update(self, data: bytes) -> None:
        self.size += len(data)
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.tail += data[-self.keep :]
        del self.tail[: max(0, len(self.tail) - self.keep)]

    def reader(self, remote: Callable[[], AbstractContextManager[BinaryIO]]) -> _KeptReader:
        return _KeptReader(self, remote)


class _KeptReader(SeekableView):
    """A view of the stored stream: kept bytes from memory, the rest from `remote` (opened on first need)."""

    def __init__(self, ends: KeptEnds, remote: Callable[[], AbstractContextManager[BinaryIO]]) -> None:
        super().__init__(ends.size)
        self.ends, self.remote = ends, remote
        self._stack = contextlib.ExitStack()
        self._handle: BinaryIO | None = None

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        end = min(self.position + len(buffer), self.ends.size)
        if end <= self.position:
            return 0
        tail_start = self.ends.size - len(self.ends.tail)
        if end <= len(self.ends.head):
            data = self.ends.head[self.position : end]
        elif self.position >= tail_start:
            data = self.ends.tail[self.position - tail_start : end - tail_start]
        else:
            data = self._remote_read(end - self.position)
        memoryview(buffer).cast("B")[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _remote_read(self, size: int) -> bytes:
        if self._handle is None:
            self._handle = self._stack.enter_context(self.remote())
        self._handle.seek(self.position)
        return self._handle.read(size)

    def close(self) -> None:
        self._stack.close()
        super().close()
