"""A streaming `multipart/form-data` reader (RFC 7578): parts are read as they arrive, never held whole.

Starlette's form parser spools file parts to local temporary files; uploads must go straight to
the object store instead, so this reader hands out each part as a file-like object over the
request body. The parsing itself is python-multipart's push parser (the one under Starlette's
form parser); this module turns it into a pull reader: the body goes to the parser one READ_BYTES
chunk at a time, only when the current part needs more bytes, and the data it hands back waits in
a queue for `Part.read`. Memory stays bounded by about one chunk plus a part's headers.

python-multipart limits each header line (here to MAX_HEADER_BYTES) and the number of headers of
a part (8, its default). Left to this module: a preamble before the first delimiter (skipped, at most
MAX_PREAMBLE_BYTES), a part's headers in all (at most MAX_HEADER_BYTES), a form-data
Content-Disposition with a name, an RFC 5987 `filename*` (preferred to `filename`; the parser's
`parse_options_header` ignores it), the number of parts, and a body ending before its closing
delimiter (the parser does not notice).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

READ_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024
MAX_BOUNDARY_CHARS = 70  # RFC 2046
# `filename*` outside quoted strings: a quoted string is matched (and passed over) as a whole.
_EXTENDED_FILENAME = re.compile(r'"(?:[^"\\]|\\.)*"|;\s*filename\*\s*=\s*([^;\s]*)', re.IGNORECASE)
_PART_END = object()


class MultipartError(ValueError):
    """The body is not well-formed multipart (bad boundary, truncated, oversized headers)."""


def boundary_of(content_type: str) -> bytes:
    """The boundary named by a `multipart/form-data` Content-Type header, or MultipartError."""
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise MultipartError("the body is not multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > MAX_BOUNDARY_CHARS:
        raise MultipartError(f"the multipart Content-Type has no boundary of 1 to {MAX_BOUNDARY_CHARS} characters")
    return boundary


@dataclass(frozen=True)
class PartHeaders:
    name: str
    filename: str | None
    content_type: str | None


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _disposition(value: bytes) -> tuple[str, str | None]:
    """The `name` and `filename` of a Content-Disposition: form-data header (`filename*` wins)."""
    disposition, params = parse_options_header(value)
    if disposition != b"form-data":
        raise MultipartError("a part is not form-data")
    if b"name" not in params:
        raise MultipartError("a part has no name")
    filename = _text(params[b"filename"]) if b"filename" in params else None
    extended = next((m for m in _EXTENDED_FILENAME.findall(_text(value)) if m), None)
    if extended and extended.count("'") >= 2:  # RFC 5987: charset'language'percent-encoded
        charset, _, encoded = extended.partition("'")
        try:
            filename = unquote(encoded.partition("'")[2], encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            raise MultipartError("a part's filename* is not in its charset") from None
    return _text(params[b"name"]), filename


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

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BYTES), b""))
        return self._reader._read_body(self, size)

    def readable(self) -> bool:
        return True


class MultipartReader:
    """Pull parts one by one from `stream` (anything with `.read(n)`): `next_part()`, then read it."""

    def __init__(self, stream: BinaryIO, boundary: bytes, *, max_parts: int = 100_000) -> None:
        self._stream = stream
        self._delimiter = b"\r\n--" + boundary
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": lambda: self._events.append(_PART_END),
            "on_end": self._on_end,
        }
        try:
            self._parser = MultipartParser(boundary, callbacks, max_header_size=MAX_HEADER_BYTES)
        except FormParserError as exc:
            raise MultipartError(str(exc)) from None
        # What the parser handed out and no one has read yet, in order: a part's PartHeaders, its
        # data (bytes, the first one read from `_offset` on), then _PART_END.
        self._events: deque[object] = deque()
        self._offset = 0
        self._started = self._ended = False
        self._current: Part | None = None
        self._parts = 0
        self._max_parts = max_parts
        self._fields: dict[str, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0

    # Parser callbacks: they run inside `self._parser.write`.

    def _on_part_begin(self) -> None:
        self._fields, self._header_bytes = {}, 0

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise MultipartError(f"part headers are larger than {MAX_HEADER_BYTES // 1024} KiB")

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._fields[self._field.decode("latin-1").strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        if "content-disposition" not in self._fields:
            raise MultipartError("a part has no Content-Disposition")
        self._parts += 1
        if self._parts > self._max_parts:
            raise MultipartError(f"more than {self._max_parts} parts")
        name, filename = _disposition(self._fields["content-disposition"])
        content_type = self._fields.get("content-type")
        self._events.append(PartHeaders(name, filename, _text(content_type) if content_type is not None else None))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(bytes(data[start:end]))

    def _on_end(self) -> None:
        self._ended = True

    # Pulling.

    def _feed(self) -> None:
        """Give the parser the next chunk of the body (the first time, from the first delimiter on)."""
        if not self._started:
            chunk = self._skip_preamble()
        elif not (chunk := self._stream.read(READ_BYTES)):
            raise MultipartError("the multipart body is truncated")
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise MultipartError(f"malformed multipart body: {exc}") from None

    def _skip_preamble(self) -> bytes:
        """The body's first bytes from its first delimiter on, which must start within MAX_PREAMBLE_BYTES."""
        self._started = True
        # Every delimiter, the first one included, is CRLF + "--" + boundary: seed the buffer with a
        # CRLF so a body starting with the delimiter (no preamble) matches like the others.
        buffer = bytearray(b"\r\n")
        window = MAX_PREAMBLE_BYTES + len(self._delimiter)
        searched = 0
        while (at := buffer.find(self._delimiter, searched, window)) < 0:
            if len(buffer) >= window or not (chunk := self._stream.read(READ_BYTES)):
                raise MultipartError("no multipart boundary found at the start of the body")
            searched = max(0, len(buffer) - len(self._delimiter) + 1)
            buffer += chunk
        return bytes(buffer[at + 2 :])

    def _read_body(self, part: Part, size: int) -> bytes:
        """Up to `size` bytes of `part`, fewer only at its end (b"" once it is over)."""
        if part.done or part is not self._current:
            return b""
        pieces: list[bytes] = []
        wanted = max(size, 1)
        while wanted:
            if not self._events:
                self._feed()
                continue
            event = self._events[0]
            if event is _PART_END:
                self._events.popleft()
                part.done = True
                break
            assert isinstance(event, bytes)
            piece = event[self._offset : self._offset + wanted]
            pieces.append(piece)
            wanted -= len(piece)
            self._offset += len(piece)
            if self._offset == len(event):
                self._events.popleft()
                self._offset = 0
        return b"".join(pieces)

    def next_part(self) -> Part | None:
        """The next part (the previous one is skipped if unread), or None after the closing delimiter."""
        if self._current is not None:
            while self._current.read(READ_BYTES):
                pass
            self._current = None
        while not self._events:
            if self._ended:  # what follows the close delimiter is an epilogue, ignored
                return None
            self._feed()
        headers = self._events.popleft()
        assert isinstance(headers, PartHeaders)
        self._current = Part(self, headers)
        return self._current
