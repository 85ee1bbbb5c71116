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
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from pipeline.core.storage import SeekableView

# signature, version, flags, method, time, date, crc, compressed size, size, name length, extra length
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_DATA_DESCRIPTOR = 0x08
_ZIP64_SIZE = 0xFFFFFFFF
_ZIP64_EXTRA = 0x0001
# Compressed bytes kept per entry: a deflate stream's block header and first symbols fit in far less.
KEEP_BYTES = 1024
# Inflating an entry only to find where it ends (its sizes come after it) stops past this many
# bytes out per byte in, plus a margin: a bomb costs no more than a bounded amount of CPU here.
INFLATE_RATIO = 64
INFLATE_MARGIN = 64 * 1024 * 1024
_INFLATE_STEP = 256 * 1024


class EntryHeads:
    """Fed a zip's bytes in order (`update`), answers the first bytes of an entry's content (`head`).

    An entry whose sizes follow its data (a data descriptor, as Java and other streaming writers
    make them) is followed by inflating it to find its end, within a bound; a stored one cannot be,
    and stops the scan.
    """

    def __init__(self) -> None:
        self.stopped = False
        self._offset = 0  # stream offset of the first byte of _pending
        self._pending = bytearray()  # a local header or data descriptor being gathered
        self._entry: tuple[int, int] | None = None  # (header offset, method) of the entry whose data passes now
        self._remaining = 0  # bytes of that entry's data still to pass, when its header gave its size
        self._inflater: zlib._Decompress | None = None  # the entry's data, when its size comes after it
        self._descriptor: int | None = None  # size of the sizes field of the data descriptor to skip next (8 or 16)
        self._zip64 = False
        self._kept = bytearray()
        self._seen = self._inflated = 0
        self._entries: dict[int, tuple[int, bytes]] = {}  # header offset -> (method, first compressed bytes)

    def update(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        data = memoryview(chunk)
        while not self.stopped:
            if self._remaining:
                if not data:
                    return
                data = self._pass_data(data)
                continue
            if self._inflater is not None:
                if not data:
                    return
                data = self._inflate(data)
                continue
            need = self._descriptor_size() if self._descriptor is not None else self._header_size()
            if need is None:
                return
            if len(self._pending) < need:
                if not data:
                    return
                take = need - len(self._pending)
                self._pending += data[:take]
                data = data[take:]
                continue
            if self._descriptor is not None:
                self._offset += len(self._pending)
                self._pending.clear()
                self._descriptor = None
            else:
                self._begin_entry()

    def _header_size(self) -> int | None:
        """Bytes of the local header being gathered (its fixed part until that is in); None once stopped."""
        if len(self._pending) < _LOCAL_HEADER.size:
            return _LOCAL_HEADER.size
        signature, _, flags, method, _, _, _, compressed, _, name_length, extra_length = _LOCAL_HEADER.unpack_from(self._pending)
        trailing_sizes = flags & _DATA_DESCRIPTOR and not compressed
        if signature != _LOCAL_SIGNATURE or compressed == _ZIP64_SIZE or (trailing_sizes and method != zipfile.ZIP_DEFLATED):
            self.stopped = True  # the central directory, or an entry only a full read can follow
            return None
        return int(_LOCAL_HEADER.size + name_length + extra_length)

    def _descriptor_size(self) -> int:
        """Bytes of the data descriptor after an entry: an optional signature, the CRC, the two sizes."""
        if len(self._pending) < 4:
            return 4
        assert self._descriptor is not None
        return (4 if self._pending[:4] == _DESCRIPTOR_SIGNATURE else 0) + 4 + self._descriptor

    def _begin_entry(self) -> None:
        _, _, flags, method, _, _, _, compressed, _, name_length, _ = _LOCAL_HEADER.unpack_from(self._pending)
        self._entry = (self._offset, method)
        self._zip64 = _has_zip64_extra(bytes(self._pending[_LOCAL_HEADER.size + name_length :]))
        self._offset += len(self._pending)
        self._pending.clear()
        self._kept = bytearray()
        if flags & _DATA_DESCRIPTOR and not compressed:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return
        self._remaining = compressed
        self._descriptor = (16 if self._zip64 else 8) if flags & _DATA_DESCRIPTOR else None
        if not compressed:
            self._end_entry()

    def _keep(self, data: memoryview) -> None:
        if len(self._kept) < KEEP_BYTES:
            self._kept += data[: KEEP_BYTES - len(self._kept)]

    def _pass_data(self, data: memoryview) -> memoryview:
        passing = min(self._remaining, len(data))
        self._keep(data[:passing])
        self._remaining -= passing
        self._offset += passing
        if not self._remaining:
            self._end_entry()
        return data[passing:]

    def _inflate(self, data: memoryview) -> memoryview:
        """Pass entry data whose length is unknown: inflate it (output dropped) until its stream ends."""
        assert self._inflater is not None
        inflater = self._inflater
        tail: memoryview | bytes = data  # then what the inflater left unconsumed
        while tail and not inflater.eof:
            self._inflated += len(inflater.decompress(tail, _INFLATE_STEP))
            if self._inflated > INFLATE_RATIO * self._seen + INFLATE_MARGIN:
                self.stopped = True  # a bomb, or a huge entry: the check reads the rest back
                return memoryview(b"")
            tail = inflater.unconsumed_tail
        if not inflater.eof:
            self._keep(data)
            self._offset += len(data)
            return memoryview(b"")
        rest = inflater.unused_data
        used = len(data) - len(rest)
        self._keep(data[:used])
        self._offset += used
        self._inflater = None
        self._descriptor = 16 if self._zip64 else 8
        self._end_entry()
        return memoryview(rest)

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


def _has_zip64_extra(extra: bytes) -> bool:
    """Whether a local header's extra field holds a ZIP64 record (then a data descriptor's sizes take 8 bytes)."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, at)
        if kind == _ZIP64_EXTRA:
            return True
        at += 4 + size
    return False


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

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data: bytes | bytearray
        end = min(self.position + len(view), self.ends.size)
        if end <= self.position:
            return 0
        tail_start = self.ends.size - len(self.ends.tail)
        if end <= len(self.ends.head):
            data = self.ends.head[self.position : end]
        elif self.position >= tail_start:
            data = self.ends.tail[self.position - tail_start : end - tail_start]
        else:
            data = self._remote_read(end - self.position)
        view[: len(data)] = data
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
