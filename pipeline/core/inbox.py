"""Where an item's raw bytes wait for a worker, in the store's `inbox/` area.

Either an object of its own (`inbox/<item id>`, or an uploaded multipart part), or an entry of a
zip uploaded over HTTP that the whole batch shares: the zip is stored once as it arrives and each
worker reads its own entry from it by ranged reads, instead of the API copying every document
into an object of its own before answering. A shared zip is deleted once no item still waiting
on it remains.

An HTTP upload's objects sit under `inbox/uploads/`, named by the time the upload started, so
that retention finds those a killed API process left behind (`upload_time`). No item's bytes may
weigh more than `max_file_bytes`, on the way in or out (`LimitedReader`).
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from pipeline.core.reasons import Rejected
from pipeline.core.storage import ObjectNotFound, ObjectStore
from pipeline.core.streams import Readable
from pipeline.core.zipnames import open_zip
from pipeline.core.zipscan import KeptEnds

# HTTP uploads' objects: `inbox/uploads/<UTC start time>-<id>/…` (see `upload_time`).
UPLOADS = "inbox/uploads/"
STAMP = "%Y%m%dT%H%M%S"
# What reading a zip entry raises when its bytes are damaged (a CRC mismatch, a broken deflate stream).
ZIP_ENTRY_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error)
# Ranged reads of a shared zip: one GET holds a small document with its local header.
MEMBER_BLOCK_BYTES = 256 * 1024
# An entry's local header without its name: 30 bytes, and room for a usual extra field.
LOCAL_HEADER_BYTES = 30 + 1024
# Reading a stored zip's end record, central directory or manifest: small GETs, not a block of documents.
DIRECTORY_BLOCK_BYTES = 64 * 1024
# Central directories kept per process: the uploads a worker's threads are on at once.
KEPT_DIRECTORIES = 16
# The intake's packs (`inbox/packs/<id>`): a zip of small documents that one message's items share,
# read by the worker in one GET (`Inbox.holding`). What a pack may hold at most:
PACK_PREFIX = "inbox/packs/"
# 32 rather than 16: what a message costs whatever its size (the pack's PUT, GET and DELETE, about 30 SQL round trips
# in four transactions, the broker, the sandbox exchange) then weighs half as much per document; a message's time
# limit still covers each of them taking the whole validation time (pipeline/workers/actors.py).
PACK_DOCUMENTS = 32
PACK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class InboxLocation:
    """An object of the inbox, or (`member`) one entry of the zip stored there."""

    key: str
    member: str | None = None


class Inbox:
    """Reads items' raw bytes from the store's inbox.

    An entry of a shared zip is read through the zip's central directory, which for a batch of
    thousands of documents is megabytes: each is read once per process and kept (with the zip's
    size) for the next entries, since a worker gets one upload's documents one after another.
    Opening an entry then costs one ranged GET, of its local header and first bytes.
    """

    def __init__(self, store: ObjectStore, keep_directories: int = KEPT_DIRECTORIES) -> None:
        self.store, self.keep_directories = store, keep_directories
        self._directories: OrderedDict[str, KeptEnds] = OrderedDict()
        self._lock = threading.Lock()
        self._held = threading.local()  # this thread's objects read whole (`holding`): key -> bytes

    @contextmanager
    def holding(self, keys: Iterable[str]) -> Iterator[None]:
        """While inside, the objects `keys` (the intake's packs) are read whole from memory by this thread:
        each is fetched by one GET on entry (a missing one is left to `open`, which says so). The
        plaintext stays in this process's memory, never on disk, and is dropped on exit."""
        held: dict[str, bytes] = {}
        for key in sorted(set(keys)):
            try:
                with self.store.open(key) as handle:
                    data = handle.read(PACK_BYTES + 1)
            except ObjectNotFound:
                continue
            if len(data) <= PACK_BYTES:  # a larger one is not a pack: read by ranges as any zip
                held[key] = data
        previous = getattr(self._held, "objects", None), getattr(self._held, "archives", None)
        # Each pack's zip directory is parsed once, on its first entry, for the entries after it too.
        archives: dict[str, zipfile.ZipFile] = {}
        self._held.objects, self._held.archives = held, archives
        try:
            yield
        finally:
            self._held.objects, self._held.archives = previous
            for archive in archives.values():
                archive.close()

    def open(self, key: str, member: str | None = None) -> AbstractContextManager[BinaryIO]:
        """The raw bytes of an item: the object at `key`, or its entry `member` of the zip at `key`.

        Raises ObjectNotFound when the object is gone; Rejected(`archive_entry_corrupt`) when the
        entry cannot be read back (bad CRC, damaged or unsupported compression).
        """
        held: dict[str, bytes] | None = getattr(self._held, "objects", None)
        if held is not None and key in held:
            return self._open_held(key, held[key], member)
        return self.store.open(key) if member is None else self._open_entry(key, member)

    @contextmanager
    def _open_held(self, key: str, data: bytes, member: str | None) -> Iterator[BinaryIO]:
        if member is None:
            yield io.BytesIO(data)
            return
        archives: dict[str, zipfile.ZipFile] = self._held.archives
        try:
            archive = archives.get(key) or archives.setdefault(key, open_zip(io.BytesIO(data)))
            entry = archive.open(archive.getinfo(member))
        except (*ZIP_ENTRY_ERRORS, KeyError, NotImplementedError):
            raise Rejected("archive_entry_corrupt") from None
        with entry:
            try:
                yield entry  # type: ignore[misc]
            except ZIP_ENTRY_ERRORS:
                raise Rejected("archive_entry_corrupt") from None

    @contextmanager
    def _open_entry(self, key: str, member: str) -> Iterator[BinaryIO]:
        directory = self._directory(key)
        # The store is first read when the entry's local header is, once its size is known: a small
        # document then comes in one GET of its own size, not of a block holding its neighbours too.
        block = [MEMBER_BLOCK_BYTES]
        with directory.reader(lambda: self.store.open_ranged(key, block[0], size=directory.size)) as handle:
            try:
                archive = open_zip(handle)  # entries named as the intake named them
                info = archive.getinfo(member)
                block[0] = min(MEMBER_BLOCK_BYTES, LOCAL_HEADER_BYTES + len(info.orig_filename.encode()) + info.compress_size)
                entry = archive.open(info)
            except (*ZIP_ENTRY_ERRORS, KeyError, NotImplementedError):
                raise Rejected("archive_entry_corrupt") from None
            with archive, entry:
                try:
                    # A zip entry reads like a binary file (read, readinto, close) but does not derive from BinaryIO.
                    yield entry  # type: ignore[misc]
                except ZIP_ENTRY_ERRORS:
                    raise Rejected("archive_entry_corrupt") from None

    def _directory(self, key: str) -> KeptEnds:
        """The zip's size and the bytes from its central directory to its end (read once, then kept)."""
        with self._lock:
            if key in self._directories:
                self._directories.move_to_end(key)
                return self._directories[key]
        with self.store.open_ranged(key, DIRECTORY_BLOCK_BYTES) as handle:
            try:
                with zipfile.ZipFile(handle) as archive:
                    start = archive.start_dir
            except (zipfile.BadZipFile, EOFError):
                raise Rejected("archive_entry_corrupt") from None
            size = handle.seek(0, io.SEEK_END)
            handle.seek(start)
            directory = KeptEnds.known(size, b"", handle.read(size - start))
        with self._lock:
            self._directories[key] = directory
            while len(self._directories) > self.keep_directories:
                self._directories.popitem(last=False)
        return directory


def upload_time(key: str) -> dt.datetime | None:
    """When the upload holding `key` started, from its name (None for a name not made by `upload_prefix`)."""
    try:
        return dt.datetime.strptime(key.removeprefix(UPLOADS).split("-", 1)[0], STAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


class LimitedReader:
    """Wraps a stream and raises TooLarge as soon as more than `limit` bytes have been read."""

    class TooLarge(Exception):
        pass

    def __init__(self, source: Readable, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(1024 * 1024), b""))
        chunk = self.source.read(size)
        self.count += len(chunk)
        if self.count > self.limit:
            raise LimitedReader.TooLarge()
        return chunk

    def readable(self) -> bool:
        return True
