"""`dmp ingest PATH --api URL`: the same folder, zip or feed sent to the HTTP API, as a source would.

A folder goes as a multipart batch (manifest part, then one part per document, read from disk as
it is sent), a zip as it is, a feed as its body. Every attempt carries the same Idempotency-Key,
derived from what is sent (the manifest and the documents' names and sizes; a feed's bytes): a run
interrupted at any point is resumed by running the same command again, and nothing is created
twice (the server answers a finished upload with its first answer, and finds an interrupted
batch by its manifest). Busy or unreachable servers (429, 409, 503, connection errors) are waited
for, with the server's Retry-After or an exponential backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pipeline.carehistory.feedformat import feed_format
from pipeline.index.states import FeedFormat, ItemState, StatusKind
from pipeline.ingest.batch import is_document
from pipeline.ingest.manifest import MANIFEST_NAME, ManifestError
from pipeline.sources import parse_source
from pipeline.status import Counts

READ_BYTES = 256 * 1024
RETRY_STATUSES = (409, 429, 502, 503, 504)
FEED_TYPES = {FeedFormat.CSV: "text/csv", FeedFormat.NDJSON: "application/x-ndjson"}


class ApiError(Exception):
    """The API refused the submission for good (the problem document's code and detail)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code = status, code


@dataclass(frozen=True)
class Submission:
    """What one `dmp ingest --api` sends: the route, its headers, and a fresh body per attempt."""

    route: str
    content_type: str
    idempotency_key: str
    size: int  # bytes of the body
    body: Callable[[], Iterator[bytes]]


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            yield chunk


def _key(kind: str, source: str, *parts: bytes) -> str:
    digest = hashlib.sha256(source.encode() + b"\0")
    for part in parts:
        digest.update(part)
    return f"dmp-{kind}-{digest.hexdigest()[:48]}"


def _quoted(name: str) -> bytes:
    if any(c in name for c in "\r\n\0"):
        raise ManifestError("batch_unreadable", f"a file name holds a line break: {name!r}")
    return name.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8")


def _folder(path: Path, source: str) -> Submission:
    manifest = path / MANIFEST_NAME
    if not manifest.is_file():
        raise ManifestError("manifest_missing", f"no {MANIFEST_NAME} in {path}")
    names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    documents = [name for name in names if is_document(name)]
    boundary = f"dmp-{uuid.uuid4().hex}".encode()
    parts = [(b"manifest", MANIFEST_NAME, manifest)] + [(b"file", name, path / name) for name in documents]
    heads = [
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + field + b'"; filename="' + _quoted(name) + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        for field, name, _ in parts
    ]
    tail = b"--" + boundary + b"--\r\n"
    sizes = [file.stat().st_size for _, _, file in parts]
    size = sum(len(head) + length + 2 for head, length in zip(heads, sizes, strict=True)) + len(tail)

    def body() -> Iterator[bytes]:
        for head, (_, _, file) in zip(heads, parts, strict=True):
            yield head
            yield from _file_chunks(file)
            yield b"\r\n"
        yield tail

    listing = "\n".join(f"{name}\t{length}" for (_, name, _), length in zip(parts, sizes, strict=True)).encode()
    key = _key("batch", source, manifest.read_bytes(), b"\0", listing)
    return Submission("batches", f"multipart/form-data; boundary={boundary.decode()}", key, size, body)


def _zip(path: Path, source: str) -> Submission:
    try:
        with zipfile.ZipFile(path) as archive:
            listing = "\n".join(f"{info.filename}\t{info.file_size}\t{info.CRC}" for info in archive.infolist()).encode()
    except zipfile.BadZipFile:
        raise ManifestError("batch_unreadable", f"{path.name} is not a readable zip file") from None
    return Submission("batches", "application/zip", _key("batch", source, listing), path.stat().st_size, lambda: _file_chunks(path))


def _feed(path: Path, source: str) -> Submission:
    digest = hashlib.sha256()
    for chunk in _file_chunks(path):
        digest.update(chunk)
    with path.open("rb") as handle:
        fmt = feed_format(path.name, handle.read(64))
    return Submission("feeds", FEED_TYPES[fmt], _key("feed", source, digest.digest()), path.stat().st_size, lambda: _file_chunks(path))


def plan(path: Path, source: str) -> Submission:
    """The submission for a batch folder, a batch zip or a feed file (any other file); the API says
    whether this source may send it."""
    parse_source(source)
    if path.is_dir():
        return _folder(path, source)
    if zipfile.is_zipfile(path):
        return _zip(path, source)
    return _feed(path, source)


def _wait_seconds(response: httpx.Response | None, attempt: int) -> float:
    header = response.headers.get("retry-after", "") if response is not None else ""
    return float(header) if header.isdigit() else min(0.5 * 2**attempt, 30.0)


def send(
    api: str,
    key: str,
    submission: Submission,
    *,
    attempts: int = 8,
    on_bytes: Callable[[int], None] = lambda _n: None,
    on_restart: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST the submission until the API takes it (202: its answer) or refuses it for good (ApiError).

    Each retry re-sends the whole body under the same Idempotency-Key.
    """
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": submission.content_type,
        "Content-Length": str(submission.size),
        "Idempotency-Key": submission.idempotency_key,
    }

    def counted() -> Iterator[bytes]:
        for chunk in submission.body():
            on_bytes(len(chunk))
            yield chunk

    url = api.rstrip("/") + "/v1/ingest/" + submission.route
    with httpx.Client(timeout=httpx.Timeout(60.0, read=600.0)) as client:
        for attempt in range(attempts):
            response = None
            with contextlib.suppress(httpx.TransportError):  # refused or dropped mid-upload: send it all again
                response = client.post(url, content=counted(), headers=headers)
            if response is not None and response.status_code == 202:
                answer: dict[str, Any] = response.json()
                return answer
            if response is not None and response.status_code not in RETRY_STATUSES:
                problem = _problem(response)
                raise ApiError(response.status_code, problem.get("code", "http_error"), problem.get("detail", response.text[:200]))
            if attempt + 1 < attempts:
                on_restart()
                sleep(_wait_seconds(response, attempt))
    raise ApiError(503, "api_unavailable", f"the API did not take the submission after {attempts} attempts")


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def check_source(api: str, key: str, source: str) -> None:
    """Before anything is sent: the key must be `source`'s (the server files a submission under its
    key's source, whatever `--source` says). ApiError `source_mismatch` naming the key's source
    otherwise, or the API's refusal of the key."""
    try:
        response = httpx.get(api.rstrip("/") + "/v1/ingest/source", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except httpx.TransportError as exc:
        raise ApiError(503, "api_unavailable", f"cannot reach the API ({type(exc).__name__})") from None
    if response.status_code != 200:
        problem = _problem(response)
        raise ApiError(response.status_code, problem.get("code", "http_error"), problem.get("detail", response.text[:200]))
    owner = response.json().get("source")
    if owner != source:
        raise ApiError(
            403, "source_mismatch", f"--source is {source} but this API key is {owner}'s: use --source {owner}, or {source}'s own key"
        )


def status_counts(api: str, key: str, status_url: str) -> Counts:
    """Done/total of a submitted batch or feed, from its status route."""
    status = httpx.get(api.rstrip("/") + status_url, headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    if status.get("kind") == StatusKind.FEED:
        counts = status["counts"]
        return Counts(status["total"], status["total"] - counts["pending_lines"] - counts["rejected"], counts["rejected"])
    states = [item["state"] for item in status["items"]]
    return Counts(len(states), states.count(ItemState.INDEXED), states.count(ItemState.REJECTED))
