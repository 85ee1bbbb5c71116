"""Submissions received over HTTP: the body streamed into the inbox, then the same intake as `dmp ingest`.

Nothing is held whole in memory or written to local disk: each body (or each multipart part) goes
to the object store as it arrives, under `inbox/uploads/<upload id>/`, and is read back from
there by the intake (a zip by ranged reads, since its directory sits at its end). An uploaded
document part becomes its item's inbox object as it is, and an uploaded zip the inbox object its
items' entries are read from: no second copy. Whatever the intake did not adopt is deleted before
the answer, so the inbox holds nothing for a failed upload.

The functions here know nothing of HTTP: they take the body as a blocking stream (`.read(n)`),
already cut at the per-request limit by the caller, and enforce the per-file limit themselves.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol

from sqlalchemy import select

from pipeline.core.inbox import DIRECTORY_BLOCK_BYTES, STAMP, UPLOADS, InboxLocation
from pipeline.core.storage import ObjectStore
from pipeline.core.streams import Readable
from pipeline.core.zipnames import file_name
from pipeline.core.zipscan import EntryHeads, KeptEnds
from pipeline.index.base import new_id
from pipeline.index.models import BatchItem
from pipeline.index.states import FeedFormat
from pipeline.ingest.archive import ArchiveLimits, check_names
from pipeline.ingest.batch import MAX_MANIFEST_BYTES, ZipBatch, is_document
from pipeline.ingest.feed_intake import FeedFile, FeedIntake, feed_hasher, receive_feed
from pipeline.ingest.intake import IntakeResult, receive_batch
from pipeline.ingest.manifest import MANIFEST_COLUMNS, MANIFEST_NAME, REQUIRED_COLUMNS, ManifestError
from pipeline.ingest.multipart import READ_BYTES, MultipartReader, Part
from pipeline.runtime import Runtime
from pipeline.sharing.metadata import SHARING_COLUMNS

MAX_METADATA_BYTES = 64 * 1024
METADATA_FIELDS = (*(column for column in MANIFEST_COLUMNS if column != "file"), "announcement_date", "version_action", *SHARING_COLUMNS)
# Optional fields written into the one-row manifest only when given: the same document sent as before keeps its identity.
OPTIONAL_METADATA = ("announcement_date", "version_action", *SHARING_COLUMNS)
FEED_NAMES = {FeedFormat.CSV: "feed.csv", FeedFormat.NDJSON: "feed.ndjson"}
# An uploaded zip's first and last bytes kept in memory while it streams in: the manifest and the
# directory of a batch of a few thousand documents, so reading them back needs no GET.
KEPT_BYTES = 1024 * 1024


class TooLarge(Exception):
    """More bytes than `limit` arrived: in the whole request (`what` = "request") or in one file."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(f"the {what} is larger than {limit} bytes")
        self.limit, self.what = limit, what


class UploadRejected(Exception):
    """The submission as a whole is unusable; `code` is stable snake_case, the message safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Watcher(Protocol):
    """Anything fed a stream's bytes as they pass: a keyed hash, the zip entry scanner."""

    def update(self, data: bytes, /) -> None: ...


class LimitedStream:
    """Passes a stream's bytes through, raising TooLarge past `limit` (if any); feeds `watchers` on the way."""

    def __init__(self, source: Readable, limit: int | None, what: str = "file", watchers: tuple[Watcher, ...] = ()) -> None:
        self.source, self.limit, self.what, self.watchers = source, limit, what, watchers
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self.count += len(chunk)
        if self.limit is not None and self.count > self.limit:
            raise TooLarge(self.limit, self.what)
        for watcher in self.watchers:
            watcher.update(chunk)
        return chunk

    def readable(self) -> bool:
        return True


class StoredBatch:
    """A batch whose documents were uploaded as parts, each already an object in the inbox."""

    def __init__(self, store: ObjectStore, manifest: bytes, parts: dict[str, str]) -> None:
        self.store, self.manifest, self.parts = store, manifest, parts

    def manifest_bytes(self) -> bytes:
        return self.manifest

    def document_names(self) -> list[str]:
        return sorted(name for name in self.parts if is_document(name))

    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        return self.store.open(self.parts[name])

    def stored(self, name: str) -> InboxLocation | None:
        return InboxLocation(self.parts[name]) if name in self.parts else None


def upload_prefix(now: dt.datetime | None = None) -> str:
    """Where one upload's objects go; the UTC time in the name lets retention find the ones a killed
    API process left behind (`pipeline.retention.purge_abandoned_uploads`)."""
    return f"{UPLOADS}{(now or dt.datetime.now(dt.UTC)).strftime(STAMP)}-{new_id()}/"


def _discard_unadopted(rt: Runtime, keys: list[str], batch_id: str | None) -> None:
    """Delete the uploaded objects that no item of the batch reads its bytes from."""
    adopted: set[str] = set()
    if batch_id is not None and keys:
        with rt.sessions() as session:
            adopted = set(session.scalars(select(BatchItem.inbox_key).where(BatchItem.batch_id == batch_id, BatchItem.inbox_key.in_(keys))))
    for key in keys:
        if key not in adopted:
            rt.store.delete(key)


def receive_zip(rt: Runtime, body: BinaryIO, source: str, send: Callable[[str], None]) -> IntakeResult:
    """A zip batch in the request body, stored in the inbox as it arrives. Its directory, manifest and
    the entries' first bytes are caught on the way (pipeline/core/zipscan.py), so checking and
    recording it reads nothing back for a batch of ordinary size. The stored zip stays as the
    documents' inbox bytes: each worker reads its own entry from it (pipeline/core/inbox.py), so no
    document is copied before the answer."""
    key = upload_prefix() + "batch.zip"
    batch_id = None
    try:
        heads, ends = EntryHeads(), KeptEnds(KEPT_BYTES)  # caught on the way in: no need to read them back
        rt.store.put(key, LimitedStream(body, None, "request", (heads, ends)))
        with ends.reader(lambda: rt.store.open_ranged(key, DIRECTORY_BLOCK_BYTES)) as handle:
            batch = ZipBatch(handle, "the uploaded zip", ArchiveLimits.from_settings(rt.settings), stored_at=key, heads=heads)
            result = receive_batch(rt, batch, source, send)
        batch_id = result.batch_id
        return result
    finally:
        _discard_unadopted(rt, [key], batch_id)


def _read_small(part: Part, limit: int, what: str) -> bytes:
    """A part small enough to hold (the manifest, the metadata), read in pieces: asking the
    reader for `limit` bytes at once would make it buffer that much of what follows."""
    data = bytearray()
    while len(data) <= limit and (piece := part.read(min(READ_BYTES, limit + 1 - len(data)))):
        data += piece
    if len(data) > limit:
        raise UploadRejected(f"{what}_invalid", f"the {what} part is larger than {limit} bytes")
    return bytes(data)


def _store_parts(
    rt: Runtime,
    body: BinaryIO,
    boundary: bytes,
    fields: tuple[str, ...],
    prefix: str,
    stored: dict[str, str],
    admit: Callable[[dict[str, bytes]], None] | None = None,
) -> dict[str, bytes]:
    """Store every file part under `prefix` as it arrives (name -> key in `stored`); return the small fields.

    `admit` sees the fields sent before the first file and may refuse (raise) before a byte of it is stored."""
    reader = MultipartReader(body, boundary)
    values: dict[str, bytes] = {}
    names: set[str] = set()
    while (part := reader.next_part()) is not None:
        if admit is not None and part.name not in fields:
            admit(values)
            admit = None
        # manifest.csv may come as its own `manifest` part or among the files.
        field = "manifest" if "manifest" in fields and (part.name == "manifest" or part.filename == MANIFEST_NAME) else part.name
        if field in fields:
            if field in values:
                raise UploadRejected("multipart_invalid", f"more than one {field} part")
            values[field] = _read_small(part, MAX_MANIFEST_BYTES if field == "manifest" else MAX_METADATA_BYTES, field)
        elif part.name in ("file", "files") and part.filename:
            name = file_name(part.filename)  # as the manifest's names: NFC
            check_names([name], names)  # the same rules as a zip's entry names
            key = f"{prefix}{len(stored):06d}"
            stored[name] = key
            rt.store.put(key, LimitedStream(part, rt.settings.max_file_bytes, "file"))
        else:
            raise UploadRejected("multipart_invalid", f"unexpected part {part.name!r} (expected: {', '.join(fields)}, file)")
    return values


def receive_multipart_batch(rt: Runtime, body: BinaryIO, boundary: bytes, source: str, send: Callable[[str], None]) -> IntakeResult:
    """A batch as multipart/form-data: a `manifest` part (manifest.csv) and `file` parts named by their filename."""
    prefix, stored = upload_prefix(), dict[str, str]()
    batch_id = None
    try:
        values = _store_parts(rt, body, boundary, ("manifest",), prefix, stored)
        if "manifest" not in values:
            raise ManifestError("manifest_missing", "no manifest part (manifest.csv) in the upload")
        result = receive_batch(rt, StoredBatch(rt.store, values["manifest"], stored), source, send)
        batch_id = result.batch_id
        return result
    finally:
        _discard_unadopted(rt, list(stored.values()), batch_id)


def metadata_manifest(metadata: bytes, file_name: str) -> bytes:
    """The one-row manifest.csv of a single document from its JSON metadata (the manifest's fields)."""
    try:
        fields = json.loads(metadata)
    except ValueError:
        raise UploadRejected("metadata_invalid", "the metadata part is not JSON") from None
    if not isinstance(fields, dict):
        raise UploadRejected("metadata_invalid", "the metadata must be a JSON object")
    unknown = sorted(set(fields) - set(METADATA_FIELDS))
    missing = [name for name in REQUIRED_COLUMNS if name != "file" and fields.get(name) is None]
    if unknown or missing:
        raise UploadRejected("metadata_invalid", f"metadata fields unknown: {unknown or 'none'}, missing: {missing or 'none'}")
    if not all(isinstance(value, str) or value is None for value in fields.values()):
        raise UploadRejected("metadata_invalid", "metadata values must be strings")
    # The optional hold only when given: the same document sent as before keeps the same identity.
    columns = (*MANIFEST_COLUMNS, *(name for name in OPTIONAL_METADATA if fields.get(name)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerow([file_name if column == "file" else fields.get(column) or "" for column in columns])
    return out.getvalue().encode("utf-8")


def receive_document(
    rt: Runtime,
    body: BinaryIO,
    boundary: bytes,
    source: str,
    send: Callable[[str], None],
    manifest_of: Callable[[bytes, str], bytes] = metadata_manifest,
    form: tuple[tuple[str, ...], Callable[[dict[str, bytes]], bytes], Callable[[dict[str, bytes]], None]] | None = None,
) -> IntakeResult:
    """One document: a `metadata` part (JSON with the manifest's fields) and one `file` part.

    It becomes a batch of one, identified like any batch by its manifest: the same metadata sent
    again is the same batch, and the same source document id is never indexed twice. `manifest_of`
    makes the manifest of the metadata (the patient's uploads complete theirs: pipeline/ingest/contributions.py).
    An HTML form sends fields instead of a metadata part: `form` names them, makes the metadata of them, and
    admits them (a CSRF token) before the file is stored.
    """
    prefix, stored = upload_prefix(), dict[str, str]()
    batch_id = None
    fields, metadata_of, admit = form or (("metadata",), lambda values: values["metadata"], None)
    try:
        values = _store_parts(rt, body, boundary, fields, prefix, stored, admit)
        if admit is not None and not stored:
            admit(values)  # a form without its file is still refused as a form first
        if (form is None and "metadata" not in values) or len(stored) != 1:
            raise UploadRejected("multipart_invalid", "send exactly one metadata part and one file part")
        (file_name,) = stored
        result = receive_batch(rt, StoredBatch(rt.store, manifest_of(metadata_of(values), file_name), stored), source, send)
        batch_id = result.batch_id
        return result
    finally:
        _discard_unadopted(rt, list(stored.values()), batch_id)


def receive_feed_upload(rt: Runtime, body: BinaryIO, fmt: FeedFormat, source: str, send: Callable[[str], None]) -> FeedIntake:
    """An insurer feed in the request body (`fmt`: csv or ndjson), identified while it streams in."""
    key = upload_prefix() + FEED_NAMES[fmt]
    hasher = feed_hasher(rt, source)
    try:
        rt.store.put(key, LimitedStream(body, None, watchers=(hasher,)))
        return receive_feed(rt, FeedFile(FEED_NAMES[fmt], lambda: rt.store.open(key)), source, send, digest=hasher.hexdigest())
    finally:
        rt.store.delete(key)
