"""Reading a dropped batch: a folder or a .zip with documents and a manifest, streamed, never loaded whole."""

from __future__ import annotations

import zipfile
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol

from pipeline.core.inbox import InboxLocation
from pipeline.core.streams import Seekable
from pipeline.core.zipnames import file_name, open_zip
from pipeline.core.zipscan import EntryHeads
from pipeline.ingest.archive import ArchiveLimits, check_archive, check_directory
from pipeline.ingest.manifest import MANIFEST_NAME, ManifestError

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# The samples' answer key sits next to the documents; it is never a document.
NOT_DOCUMENTS = frozenset({MANIFEST_NAME, "expected.csv"})


class BatchReader(Protocol):
    def manifest_bytes(self) -> bytes: ...

    def document_names(self) -> list[str]: ...

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]: ...

    def stored(self, name: str) -> InboxLocation | None:
        """Where this document already waits in the inbox (an HTTP upload's part or zip), or None."""
        ...


def is_document(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and name not in NOT_DOCUMENTS and not any(p.startswith(".") or p == "__MACOSX" for p in parts)


class FolderBatch:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[str, str] = {}  # a name as the manifest gives it (NFC) -> the path on disk

    def manifest_bytes(self) -> bytes:
        path = self.root / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError("manifest_missing", f"no {MANIFEST_NAME} in {self.root}")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError("manifest_invalid", f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
        return path.read_bytes()

    def document_names(self) -> list[str]:
        paths = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        self._paths = {file_name(path): path for path in paths}
        return sorted(name for name in self._paths if is_document(name))

    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        return (self.root / self._paths.get(name, name)).open("rb")

    def stored(self, name: str) -> InboxLocation | None:
        return None


class ZipBatch:
    """A zip batch. Members are decompressed as a stream; the manifest may sit in one top folder.

    `source` is a path or any seekable binary file (an upload read back from the object store by
    ranged reads): a zip's directory sits at its end, so it cannot be read front to back. A hostile
    archive (pipeline/ingest/archive.py) raises ArchiveRejected before anything is read out of it.
    """

    def __init__(
        self,
        source: Path | Seekable,
        name: str = "the batch",
        limits: ArchiveLimits | None = None,
        stored_at: str | None = None,
        heads: EntryHeads | None = None,
    ) -> None:
        self.stored_at = stored_at  # the inbox key of an uploaded zip: its entries are the documents' inbox bytes
        try:
            self.zip = _open_zip(source, limits or ArchiveLimits())
        except (zipfile.BadZipFile, EOFError, ValueError):
            raise ManifestError("batch_unreadable", f"{name} is not a readable zip file") from None
        check_archive(self.zip, limits or ArchiveLimits(), heads)
        files = [info.filename for info in self.zip.infolist() if not info.is_dir()]
        manifests = [n for n in files if PurePosixPath(n).name == MANIFEST_NAME and is_document(n.replace(MANIFEST_NAME, "x"))]
        self.prefix = ""
        if MANIFEST_NAME not in files and len(manifests) == 1:
            self.prefix = manifests[0][: -len(MANIFEST_NAME)]
        self._names = [n[len(self.prefix) :] for n in files if n.startswith(self.prefix)]

    def manifest_bytes(self) -> bytes:
        try:
            info = self.zip.getinfo(self.prefix + MANIFEST_NAME)
        except KeyError:
            raise ManifestError("manifest_missing", f"no {MANIFEST_NAME} in the zip") from None
        if info.file_size > MAX_MANIFEST_BYTES:
            raise ManifestError("manifest_invalid", f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
        with self.zip.open(info) as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)[:MAX_MANIFEST_BYTES]

    def document_names(self) -> list[str]:
        return sorted(name for name in self._names if is_document(name))

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        return self.zip.open(self.prefix + name)

    def stored(self, name: str) -> InboxLocation | None:
        return None if self.stored_at is None else InboxLocation(self.stored_at, self.prefix + name)


def _open_zip(source: Path | Seekable, limits: ArchiveLimits) -> zipfile.ZipFile:
    """The zip, once its end record shows a directory of a size worth reading (check_directory)."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            check_directory(handle, limits)
    else:
        check_directory(source, limits)
    return open_zip(source)


def open_batch(path: Path, limits: ArchiveLimits | None = None) -> BatchReader:
    """A reader for a batch folder or zip (checked against `limits`, else the default ones)."""
    if path.is_dir():
        return FolderBatch(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return ZipBatch(path, path.name, limits)
    raise ManifestError("batch_unreadable", f"{path} is neither a folder nor a zip file")
