"""Entry names of a batch zip are read as their sender wrote them, however the zip tool marked UTF-8."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import unicodedata
import zipfile
import zlib
from pathlib import Path

import pytest

from pipeline.core.zipnames import UNICODE_PATH_EXTRA, open_zip
from pipeline.ingest.batch import FolderBatch, ZipBatch
from pipeline.ingest.manifest import parse_manifest

NAME = "comptes-rendus/résultat d'analyse.txt"  # what French hospitals write
NFD = unicodedata.normalize("NFD", NAME)


def _placeholder(name: str) -> str:
    """An ASCII name of the same length in bytes as `name` in UTF-8, to be swapped in afterwards."""
    return "".join(c if c.isascii() else "#" * len(c.encode()) for c in name)


def unmarked_utf8_zip(entries: dict[str, bytes]) -> bytes:
    """A zip whose names are UTF-8 bytes with no mark at all, as Info-ZIP `zip -r` writes them on Linux
    (zipfile itself flags every non-ASCII name): written under ASCII placeholders, then swapped."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(_placeholder(name), data)
    data = out.getvalue()
    for name in entries:
        if not name.isascii():
            data = data.replace(_placeholder(name).encode(), name.encode())
    return data


def info_zip_zip(folder: Path, out: Path) -> Path:
    """`zip -r` run on `folder`'s contents by the real Info-ZIP tool (Debian's `zip` package)."""
    subprocess.run(["zip", "-q", "-r", str(out), "."], cwd=folder, check=True, env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    return out


needs_zip_tool = pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP's zip is not installed (Debian package `zip`)")


def _unicode_path_extra(header_name: bytes, unicode_name: str, crc: int | None = None) -> bytes:
    """An Info-ZIP Unicode Path extra field (APPNOTE 4.6.9): version 1, CRC-32 of the header's name, UTF-8 name."""
    body = struct.pack("<BL", 1, zlib.crc32(header_name) if crc is None else crc) + unicode_name.encode()
    return struct.pack("<HH", UNICODE_PATH_EXTRA, len(body)) + body


def _zip_with_extra(header_name: str, extra: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo(header_name, (2026, 1, 2, 0, 0, 0))
        info.extra = extra
        archive.writestr(info, b"contenu")
    return out.getvalue()


def _names(data: bytes) -> list[str]:
    return open_zip(io.BytesIO(data)).namelist()


def test_unmarked_names_are_read_as_utf8_when_they_are_utf8_else_as_cp437():
    assert _names(unmarked_utf8_zip({NAME: b"x"})) == [NAME]
    cp437 = unmarked_utf8_zip({"r#sultat.txt": b"x"}).replace(b"r#sultat", b"r\x82sultat")  # 0x82 is é in CP437
    assert _names(cp437) == ["résultat.txt"]


@needs_zip_tool
def test_names_from_the_real_zip_tool_are_read_as_written(tmp_path):
    folder = tmp_path / "lot"
    (folder / "comptes-rendus").mkdir(parents=True)
    (folder / NAME).write_bytes(b"x")
    with zipfile.ZipFile(info_zip_zip(folder, tmp_path / "lot.zip")) as plain:
        assert plain.namelist() != [NAME]  # what zipfile alone makes of it: CP437 mojibake
    assert [n for n in open_zip(tmp_path / "lot.zip").namelist() if not n.endswith("/")] == [NAME]


def test_the_unicode_path_extra_field_gives_the_name_while_its_crc_matches_the_header_s():
    assert _names(_zip_with_extra("r_sultat.txt", _unicode_path_extra(b"r_sultat.txt", "résultat.txt"))) == ["résultat.txt"]
    # An entry renamed by a tool that left the old field: its CRC no longer matches the header's name.
    stale = _unicode_path_extra(b"ancien.txt", "résultat-ancien.txt")
    assert _names(_zip_with_extra("nouveau.txt", stale)) == ["nouveau.txt"]


def test_decomposed_names_from_macos_match_the_manifest_s_composed_ones():
    manifest = f"file,patient_ins\n{NAME},1\n".encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:  # zipfile marks UTF-8 names with the language-encoding flag
        archive.writestr("manifest.csv", manifest)
        archive.writestr(NFD, b"x")
    batch = ZipBatch(io.BytesIO(out.getvalue()))
    assert batch.document_names() == [NAME]
    with batch.open(NAME) as handle:
        assert handle.read() == b"x"


def test_a_folder_s_decomposed_names_match_the_manifest_and_open(tmp_path):
    (tmp_path / "comptes-rendus").mkdir()
    (tmp_path / NFD).write_bytes(b"x")
    batch = FolderBatch(tmp_path)
    assert batch.document_names() == [NAME]
    with batch.open(NAME) as handle:
        assert handle.read() == b"x"


def test_the_manifest_s_file_names_are_composed():
    manifest = parse_manifest(
        f"file,patient_ins,source_document_id,title,service_date,author_id,author_profession\n{NFD},1,2,3,4,5,6\n".encode()
    )
    assert manifest.listed_files == {NAME}
