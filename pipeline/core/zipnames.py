"""Entry names of a batch zip as the sender wrote them, whichever way the zip tool marked their encoding.

The zip format first knew only CP437 names; UTF-8 came later, marked in three ways, and French
hospitals name files with accents (`résultat.pdf`), so every way must be read:

- the language-encoding flag (general purpose bit 11): the name is UTF-8 (zipfile reads it);
- the Info-ZIP Unicode Path extra field (0x7075, APPNOTE 4.6.9): a UTF-8 copy of the name,
  valid while the CRC-32 it carries matches the name in the header;
- no mark at all: Info-ZIP's `zip` on Linux, macOS's Archive Utility and many libraries write
  the UTF-8 bytes as they are. zipfile reads those as CP437 (`rÃ©sultat.pdf` comes out as
  `r├⌐sultat.pdf`); bytes that are valid UTF-8 are taken as UTF-8 (CP437 names of accented
  letters almost never are), the rest stays CP437.

Names are then put in NFC, as the manifest's are (`file_name`, below): macOS writes NFD.
Only `ZipInfo.filename` changes; `orig_filename` keeps what zipfile read, which it compares
with each entry's local header when the entry is opened.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import zipfile
import zlib

from pipeline.core.streams import Seekable

UNICODE_PATH_EXTRA = 0x7075
_UTF8_FLAG = 0x800
_EXTRA_HEADER = struct.Struct("<HH")


def file_name(name: str) -> str:
    """A file name as the manifest and the batch are matched on: in NFC, since macOS writes names
    decomposed (NFD: `e` + combining accent) and other systems composed, for the same text."""
    return unicodedata.normalize("NFC", name)


def _unicode_path(extra: bytes, raw_name: bytes) -> str | None:
    """The name held by an Info-ZIP Unicode Path extra field, if there is a current one (version 1,
    CRC-32 of the header's name bytes matching: a tool that renamed the entry left a stale copy)."""
    at = 0
    while at + _EXTRA_HEADER.size <= len(extra):
        kind, size = _EXTRA_HEADER.unpack_from(extra, at)
        data = extra[at + _EXTRA_HEADER.size : at + _EXTRA_HEADER.size + size]
        at += _EXTRA_HEADER.size + size
        if kind != UNICODE_PATH_EXTRA or len(data) < 5 or data[0] != 1:
            continue
        if struct.unpack_from("<L", data, 1)[0] != zlib.crc32(raw_name):
            return None
        try:
            return data[5:].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its sender wrote it, in NFC (see the module's docstring)."""
    if info.flag_bits & _UTF8_FLAG:
        return file_name(info.filename)
    try:
        raw = info.orig_filename.encode("cp437")  # zipfile decoded the unmarked name as CP437: its bytes again
    except UnicodeEncodeError:
        return file_name(info.filename)  # already decoded some other way: keep it
    name = _unicode_path(info.extra, raw)
    if name is None:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            name = info.orig_filename
    return file_name(name.split("\0", 1)[0])  # as zipfile does: a name ends at its first NUL


def read_names(archive: zipfile.ZipFile) -> zipfile.ZipFile:
    """Rename `archive`'s entries to `entry_name` (in place, for lookups by name too) and return it."""
    for info in archive.filelist:
        info.filename = entry_name(info)
    archive.NameToInfo = {info.filename: info for info in archive.filelist}
    return archive


def open_zip(source: str | os.PathLike[str] | Seekable) -> zipfile.ZipFile:
    """A zip opened for reading (path or seekable file), its entries named as their sender wrote them."""
    return read_names(zipfile.ZipFile(source))
