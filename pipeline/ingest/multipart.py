"""A streaming `multipart/form-data` reader (RFC 7578): parts are read as they arrive, never held whole.

Starlette's form parser spools file parts to local temporary files; uploads must go straight to
the object store instead, so this reader hands out each part as a file-like object over the
request body. Memory stays bounded by the read size plus one delimiter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote

READ_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024
_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_PARAMETER = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


class MultipartError(ValueError):
    """The body is not well-formed multipart (bad boundary, truncated, oversized headers)."""


def boundary_of(content_type: str) -> bytes:
    """The boundary named by a `multipart/form-data` Content-Type header, or MultipartError."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("the body is not multipart/form-data")
    match = _BOUNDARY.search(content_type)
    if not match:
        raise MultipartError("the multipart Content-Type has no boundary")
    return (match.group(1) or match.group(2)).encode("latin-1")


@dataclass(frozen=True)
class PartHeaders:
    name: str
    filename: str | None
    content_type: str | None


def _disposition(value: str) -> tuple[str, str | None]:
    """The `name` and `filename` of a Content-Disposition: form-data header (`filename*` wins)."""
    if not value.strip().lower().startswith("form-data"):
        raise MultipartError("a part is not form-data")
    params: dict[str, str] = {}
    for key, quoted, bare in _PARAMETER.findall(value):
        params[key.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
    if "name" not in params:
        raise MultipartError("a part has no name")
    filename = params.get("filename")
    extended = params.get("filename*")
    if extended and "''" in extended:  # RFC 5987: charset'language'percent-encoded
        charset, _, encoded = extended.partition("'")
        filename = unquote(encoded.partition("'")[2], encoding=charset or "utf-8", errors="strict")
    return params["name"], filename


def _headers(block: bytes) -> PartHeaders:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = block.decode("latin-1")
    fields: dict[str, str] = {}
    for line in re.split(r"\r?\n", text):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError("a part header line has no colon")
        fields[name.strip().lower()] = value.strip()
    if "content-disposition" not in fields:
        raise MultipartError("a part has no Content-Disposition")
    name, filename = _disposition(fields["content-disposition"])
    return PartHeaders(name, filename, fields.get("content-type"))


class Part:
    """One part: its headers, and its body as a read-only stream ending at the next delimiter."""

    def __init__(self, reader: MultipartReader, headers: PartHeaders) -> None:
        self._reader = reader
        self.headers = headers
        self.done = False

    @property
    def name(self) -> str:
        return self.headers.name

    @property
    def filename(self) -> str | None:
        return self.headers.filename

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        return self._reader._read_body(self, size)

    def readable(self) -> bool:
        return True


class MultipartReader:
    """Pull parts one by one from `stream` (anything with `.read(n)`): `next_part()`, then read it."""

    def __init__(self, stream: BinaryIO, boundary: bytes, *, max_parts: int = 100_000) -> None:
        self._stream = stream
        # Every delimiter, the first one included, is CRLF + "--" + boundary: seed the buffer with a
        # CRLF so a body starting with the delimiter (no preamble) matches like the others.
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")
        self._eof = False
        self._current: Part | None = None
        self._started = False
        self._closed = False
        self._parts = 0
        self._max_parts = max_parts

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted and not self._eof:
            chunk = self._stream.read(READ_BYTES)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    def _read_body(self, part: Part, size: int) -> bytes:
        if part.done or part is not self._current:
            return b""
        size = max(size, 1)
        window = size + len(self._delimiter)
        self._fill(window)
        at = self._buffer.find(self._delimiter, 0, window)
        if at == 0:
            del self._buffer[: len(self._delimiter)]
            part.done = True
            return b""
        if at < 0 and len(self._buffer) < window:  # the stream ended inside a part
            raise MultipartError("the multipart body is truncated")
        # No delimiter starts before `end`: a delimiter starting earlier would end inside the window.
        end = min(size, at) if at > 0 else size
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    def next_part(self) -> Part | None:
        """The next part (the previous one is skipped if unread), or None after the closing delimiter."""
        if self._current is not None:
            while self._current.read(READ_BYTES):
                pass
            self._current = None
        if self._closed:
            return None
        if not self._started:
            self._skip_preamble()
        self._fill(2)
        if self._buffer[:2] == b"--":  # the close delimiter: what follows is an epilogue, ignored
            self._closed = True
            return None
        self._end_of_delimiter_line()
        self._fill(MAX_HEADER_BYTES + 4)
        end = self._buffer.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
        if end < 0:
            raise MultipartError("part headers are missing, truncated or larger than 16 KiB")
        headers = _headers(bytes(self._buffer[:end]))
        del self._buffer[: end + 4]
        self._parts += 1
        if self._parts > self._max_parts:
            raise MultipartError(f"more than {self._max_parts} parts")
        self._current = Part(self, headers)
        return self._current

    def _skip_preamble(self) -> None:
        self._started = True
        self._fill(MAX_PREAMBLE_BYTES + len(self._delimiter))
        at = self._buffer.find(self._delimiter, 0, MAX_PREAMBLE_BYTES + len(self._delimiter))
        if at < 0:
            raise MultipartError("no multipart boundary found at the start of the body")
        del self._buffer[: at + len(self._delimiter)]

    def _end_of_delimiter_line(self) -> None:
        """After a delimiter: optional transport padding (spaces, tabs), then CRLF."""
        self._fill(1024)
        position = 0
        while position < len(self._buffer) and self._buffer[position] in b" \t":
            position += 1
        if self._buffer[position : position + 2] == b"\r\n":
            del self._buffer[: position + 2]
        elif self._buffer[position : position + 1] == b"\n":
            del self._buffer[: position + 1]
        else:
            raise MultipartError("a multipart delimiter is not followed by a line end")
