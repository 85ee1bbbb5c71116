"""Hostile archives: what a batch zip may not hold, checked before anything is read out of it.

A zip names its own entries and sizes, so a hostile one can aim at whoever unpacks it: paths
that climb out of the destination (absolute, `..`), symbolic links, two entries under one name
(which one is the document?), zips inside zips (recursive bombs), or sizes and compression
ratios that turn a small upload into gigabytes. Nothing here extracts to disk (documents go to
object keys named by item ids, never by entry names), but the batch is still refused whole, with
a stable reason, so the sender knows what to fix. zipfile itself stops a member at its declared
size and checks its CRC, so the declared sizes checked here bound what can come out.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from pipeline.core.reasons import REASONS
from pipeline.core.settings import Settings
from pipeline.core.streams import Seekable
from pipeline.core.zipscan import EntryHeads
from pipeline.ingest.manifest import ManifestError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member, or an empty archive
# The end of central directory record, and its ZIP64 locator and record (APPNOTE 4.3.14-16).
_END = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
# A central directory larger than this is refused unread: about 100,000 entries with long names.
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
# Compression bombs need size: small entries are not held to the ratio (a short text may shrink 100x).
RATIO_MIN_BYTES = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_DEFAULTS = Settings.model_fields


@dataclass(frozen=True)
class ArchiveLimits:
    max_uncompressed_bytes: int = _DEFAULTS["archive_max_uncompressed_bytes"].default
    max_ratio: float = _DEFAULTS["archive_max_ratio"].default
    max_entries: int = _DEFAULTS["archive_max_entries"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(settings.archive_max_uncompressed_bytes, settings.archive_max_ratio, settings.archive_max_entries)


class ArchiveRejected(ManifestError):
    """The archive is refused as a whole; `code` is one of the `archive_*` reasons, `entry` the culprit."""

    def __init__(self, code: str, entry: str, detail: str = "") -> None:
        self.entry = entry
        shown = entry if len(entry) <= 200 else entry[:200] + "…"
        super().__init__(code, f"{REASONS[code]} Entry {shown!r}{': ' + detail if detail else ''}.")


def check_name(name: str) -> None:
    """An entry (or uploaded file) name must stay inside the batch: no absolute path, no `..`."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ArchiveRejected("archive_absolute_path", name)
    if ".." in re.split(r"[/\\]", name):
        raise ArchiveRejected("archive_path_traversal", name)


def check_names(names: Iterable[str], seen: set[str] | None = None) -> None:
    """Every name inside the batch, and no two alike, compared as paths (`a//b` is `a/b`); `seen`
    carries the names met so far when they arrive one at a time (multipart parts)."""
    seen = set() if seen is None else seen
    for name in names:
        check_name(name)
        key = str(PurePosixPath(name.replace("\\", "/")))
        if key in seen:
            raise ArchiveRejected("archive_duplicate_name", name)
        seen.add(key)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _looks_like_zip(archive: zipfile.ZipFile, info: zipfile.ZipInfo, heads: EntryHeads | None = None) -> bool:
    if info.filename.lower().endswith(".zip"):
        return True
    first = heads.head(info) if heads is not None else None
    if first is not None:
        return first in ZIP_MAGIC
    try:
        with archive.open(info) as member:
            return member.read(4) in ZIP_MAGIC
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError):
        return False  # unreadable: a bad document for validation to reject, not a nested archive


def _inner_zip(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """The name of a zip inside the zip member `info`, if any (entries read in file order: forward seeks only)."""
    try:
        with archive.open(info) as member, zipfile.ZipFile(member) as inner:
            for entry in sorted(inner.infolist(), key=lambda i: i.header_offset):
                if not entry.is_dir() and _looks_like_zip(inner, entry):
                    return entry.filename
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, ValueError):
        return None  # not a readable zip after all
    return None


def _archive_bytes(archive: zipfile.ZipFile) -> int | None:
    """The archive's own size (zipfile seeks before every read, so moving its file position is harmless)."""
    try:
        return archive.fp.seek(0, io.SEEK_END) if archive.fp is not None else None
    except (OSError, ValueError):
        return None


def check_directory(handle: Seekable, limits: ArchiveLimits) -> None:
    """Refuse a zip whose end record announces too many entries or too large a central directory,
    before zipfile reads that directory whole and builds an object per entry (memory and time a
    hostile upload would otherwise choose). A file with no end record is left to zipfile to refuse."""
    size = handle.seek(0, io.SEEK_END)
    start = max(0, size - _END.size - 0xFFFF)  # the end record, after it a comment of up to 64 KiB
    handle.seek(start)
    tail = handle.read(size - start)
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or len(tail) - at < _END.size:
        return
    _, _, _, _, entries, directory_bytes, _, _ = _END.unpack_from(tail, at)
    locator = at - _ZIP64_LOCATOR.size
    if (entries == 0xFFFF or directory_bytes == 0xFFFFFFFF) and locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR_SIGNATURE:
        _, _, record_at, _ = _ZIP64_LOCATOR.unpack_from(tail, locator)
        handle.seek(record_at)
        record = handle.read(_ZIP64_END.size)
        if len(record) == _ZIP64_END.size and record[:4] == _ZIP64_END_SIGNATURE:
            entries, directory_bytes = _ZIP64_END.unpack_from(record)[7:9]
    if entries > limits.max_entries or directory_bytes > MAX_DIRECTORY_BYTES:
        detail = f"{entries} entries in a {directory_bytes}-byte directory, limits {limits.max_entries} and {MAX_DIRECTORY_BYTES}"
        raise ArchiveRejected("archive_too_many_entries", "*", detail)


def check_archive(archive: zipfile.ZipFile, limits: ArchiveLimits, heads: EntryHeads | None = None) -> None:
    """Raise ArchiveRejected for the first hostile trait of `archive`; return quietly for a sound one.

    Central-directory checks first (names, links, encryption, sizes, ratios), then the nested
    zips, which need the first bytes of each member: from `heads` when they were caught as the
    zip streamed in (an upload), else read from the archive.
    """
    infos = archive.infolist()
    check_names(info.filename for info in infos if not info.is_dir())
    for info in infos:
        if info.is_dir():
            check_name(info.filename)
        if _is_symlink(info):
            raise ArchiveRejected("archive_symlink", info.filename)
        if info.flag_bits & 0x1:
            raise ArchiveRejected("archive_encrypted", info.filename)
    total = sum(info.file_size for info in infos)
    if total > limits.max_uncompressed_bytes:
        raise ArchiveRejected("archive_too_large", "*", f"{total} bytes uncompressed, limit {limits.max_uncompressed_bytes}")
    for info in infos:
        if info.file_size >= RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveRejected("archive_ratio_exceeded", info.filename, f"limit {limits.max_ratio:g}:1")
    # The whole archive too: entries sharing their compressed bytes (overlapping entries) each look sane.
    size = _archive_bytes(archive)
    if size and total >= RATIO_MIN_BYTES and total > limits.max_ratio * size:
        raise ArchiveRejected("archive_ratio_exceeded", "*", f"{total} bytes from a {size}-byte archive, limit {limits.max_ratio:g}:1")
    for info in infos:
        if not info.is_dir() and _looks_like_zip(archive, info, heads) and (inner := _inner_zip(archive, info)) is not None:
            raise ArchiveRejected("archive_nested_too_deep", info.filename, f"it holds the zip {inner!r}")
