"""What a PDF would make a viewer run, fetch or decode: the checks behind `inspect.check_pdf`.

pypdf reads the file leniently, as viewers do; `scan` then visits every object reachable from the
trailer. What is refused, and why (README, "Containing hostile files"):

- code a viewer runs: JavaScript (in an action, a form field, the document's name tree), a script
  in an XFA form, a launch action. Two kinds of script entry are not code and pass: an empty one,
  and a form field's format declaration, a call of one of Acrobat's built-in field-format
  functions with constant arguments (`AFNumber_Format(2, 0, 0, 0, "€", true);`), which form
  tools write for a date, number or phone field (README, "Active content");
- actions that reach outside the document: a go-to-remote, import or thread action naming an
  absolute path or a URL, a link to a `file:` or `smb:` address or a UNC path (`\\\\host\\share`:
  Windows answers with the reader's credentials, the classic hash leak);
- executables, embedded as attachments or carried by the same bytes read as a ZIP (a polyglot);
- ambiguity: a dictionary that repeats a key. pypdf keeps the first value and viewers the last, so
  what is checked here would not be what a reader sees (a second /OpenAction, a second /Contents).
  Only the catalog's opening display (/PageMode, /PageLayout: a name, whichever a reader takes)
  may repeat;
- sizes: decompressed streams past the limit, images with more pixels than the limit, more
  objects than the limit or than the file's size can honestly hold. Images are never decoded here
  (JBIG2 has no decoder installed, and a viewer decodes an image only as far as its width x
  height): they count at their stored size, their pixels are read from their dictionary. A
  stream in a filter no reader knows counts at its stored size too: nobody can inflate it.

Everything here parses hostile input inside the sandbox and ends in a `Rejected` or returns.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NullObject,
    NumberObject,
    PdfObject,
    StreamObject,
)

from pipeline.core.reasons import Rejected

EXECUTABLE_SUFFIXES = (".exe", ".dll", ".scr", ".com", ".bat", ".cmd", ".ps1", ".vbs", ".js", ".jse", ".jar", ".msi", ".sh", ".app")
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"#!", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")

# Inline-image abbreviations some producers also write in stream dictionaries; viewers accept them,
# pypdf 7 refuses them. Rewritten in the parsed copy only: the stored bytes are untouched.
ABBREVIATED_FILTERS = {
    "/AHx": "/ASCIIHexDecode",
    "/A85": "/ASCII85Decode",
    "/LZW": "/LZWDecode",
    "/Fl": "/FlateDecode",
    "/RL": "/RunLengthDecode",
    "/CCF": "/CCITTFaxDecode",
    "/DCT": "/DCTDecode",
}
# Actions that open another file: their target must stay a name relative to the document.
FILE_ACTIONS = frozenset({"/GoToR", "/GoToE", "/ImportData", "/Thread"})
# Actions whose target is an address: a file share there is the credential leak.
ADDRESS_ACTIONS = frozenset({"/URI", "/SubmitForm"})
FILESPEC_KEYS = ("/F", "/UF", "/DOS", "/Mac", "/Unix")
NETWORK_SCHEMES = ("file:", "smb:", "cifs:", "nfs:")
# Keys that may repeat: how the viewer first shows the document, a name either way.
REPEATABLE_KEYS = frozenset({"/PageMode", "/PageLayout"})
# Objects a file may hold per byte of its size, beyond a floor for small files: real files stay
# under 0.25 per byte (0.53 for files under 20 kB) over 1,700 public test PDFs; more comes from
# object streams inflating into hundreds of thousands of tiny objects, each costing a visit.
OBJECTS_PER_BYTE = 1
OBJECTS_FLOOR = 20_000
# The same for object streams, which pypdf parses whole on first use (about 1 s per megabyte, 4 s
# per megabyte of tiny objects): real files inflate them to at most 3.3 times their size over the
# same corpus (1.6 above 20 kB); a 1.5 MB pdf.js test file inflating 11 times took 21 s of the 30.
OBJECT_STREAM_BYTES_PER_BYTE = 8
OBJECT_STREAM_FLOOR = 256 * 1024

# Acrobat's built-in field-format functions (AForm), which form tools call with constants to
# declare a field's format, keystroke filter, range or sum.
FIELD_FORMAT_FUNCTIONS = (
    "AFNumber_Format|AFNumber_Keystroke|AFPercent_Format|AFPercent_Keystroke|AFDate_Format|AFDate_FormatEx"
    "|AFDate_Keystroke|AFDate_KeystrokeEx|AFTime_Format|AFTime_FormatEx|AFTime_Keystroke|AFTime_KeystrokeEx"
    "|AFSpecial_Format|AFSpecial_Keystroke|AFSpecial_KeystrokeEx|AFRange_Validate|AFSimple_Calculate"
)
_CONSTANT_STRING = r"""(?:"[^"\\\r\n]{0,200}"|'[^'\\\r\n]{0,200}')"""
_CONSTANT_ARRAY = rf"new\s+Array\s*\(\s*(?:{_CONSTANT_STRING}(?:\s*,\s*{_CONSTANT_STRING})*)?\s*\)"
_CONSTANT = rf"(?:-?\d{{1,12}}(?:\.\d{{1,12}})?|true|false|{_CONSTANT_STRING}|{_CONSTANT_ARRAY})"
_FIELD_FORMAT = re.compile(rf"\s*(?:(?:{FIELD_FORMAT_FUNCTIONS})\s*\(\s*(?:{_CONSTANT}(?:\s*,\s*{_CONSTANT})*)?\s*\)\s*(?:;\s*)?){{1,8}}")

_WHITESPACE = rb"[\x00\t\n\x0c\r ]"
_OBJECT_HEADER = re.compile(rb"(\d{1,10})" + _WHITESPACE + rb"+(\d{1,5})" + _WHITESPACE + rb"+obj")
_OBJECT_HEADER_AT = re.compile(_WHITESPACE + rb"*" + _OBJECT_HEADER.pattern)
_XFA_SCRIPT = re.compile(rb"<(?:[\w.-]+:)?script\b[^>]*?(/?)>", re.IGNORECASE)
_XFA_SCRIPT_END = re.compile(rb"</(?:[\w.-]+:)?script\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class ScanLimits:
    max_objects: int
    max_decompressed_bytes: int
    max_image_pixels: int
    file_bytes: int  # the file's size: it bounds the objects it may honestly hold


# ---------------------------------------------------------------------------------------------
# Reading


class Reader(PdfReader):
    """pypdf's lenient reader, with misplaced objects found by one scan of the file instead of one per object.

    When the cross-reference table lacks an object or gives a wrong offset, pypdf searches the whole
    file for that object's header, once per reference: a 1.5 MB file citing thousands of missing
    objects took most of the time budget. Here the file is scanned once for every object header
    (the last one of a number wins, as in a reader rebuilding the table); a reference found nowhere
    is the null object, as ISO 32000 says (7.3.10).
    """

    def __init__(self, data: bytes) -> None:
        self._bytes = data
        self._headers: dict[tuple[int, int], int] | None = None
        self._object_streams: set[int] = set()
        self._object_stream_budget = OBJECT_STREAM_FLOOR + OBJECT_STREAM_BYTES_PER_BYTE * len(data)
        super().__init__(io.BytesIO(data), strict=False)

    def get_object(self, indirect_reference: int | IndirectObject) -> PdfObject | None:
        ref = indirect_reference if isinstance(indirect_reference, IndirectObject) else IndirectObject(indirect_reference, 0, self)
        if ref.generation == 0 and ref.idnum in self.xref_objStm:
            self._count_object_stream(self.xref_objStm[ref.idnum][0])
        if (ref.generation, ref.idnum) not in self.resolved_objects and not self._located(ref):
            offset = self._object_headers().get((ref.idnum, ref.generation))
            if offset is None:
                return NullObject()
            self.xref.setdefault(ref.generation, {})[ref.idnum] = offset
        return super().get_object(ref)

    def _count_object_stream(self, number: int) -> None:
        """Refuse object streams inflating past the file's size can honestly explain, before pypdf parses them."""
        if number in self._object_streams:
            return
        self._object_streams.add(number)
        holder = self.get_object(number)
        if isinstance(holder, StreamObject):
            self._object_stream_budget -= len(holder.get_data())
            if self._object_stream_budget < 0:
                raise Rejected("pdf_too_large", "Object streams inflate far beyond the file's size.")

    def _located(self, ref: IndirectObject) -> bool:
        if ref.generation == 0 and ref.idnum in self.xref_objStm:
            return True
        offset = self.xref.get(ref.generation, {}).get(ref.idnum)
        if offset is None:
            return False
        if self.xref_free_entry.get(ref.generation, {}).get(ref.idnum, False):
            return True  # pypdf answers null for a free entry without searching
        found = _OBJECT_HEADER_AT.match(self._bytes, offset)
        return found is not None and (int(found[1]), int(found[2])) == (ref.idnum, ref.generation)

    def _object_headers(self) -> dict[tuple[int, int], int]:
        if self._headers is None:
            self._headers = {(int(m[1]), int(m[2])): m.start() for m in _OBJECT_HEADER.finditer(self._bytes)}
        return self._headers


_repeated_keys: ContextVar[list[str] | None] = ContextVar("repeated_keys", default=None)


class _RepeatedKeyLog(logging.Handler):
    """Counts the repeated keys pypdf meets while parsing dictionaries; passes its errors on, drops its warnings.

    pypdf reports a repeated key only as a warning of the module that parses dictionaries (keeping
    the first value), so that module's log is the one place that sees them. Its other warnings
    narrate every oddity of a hostile file.
    """

    def emit(self, record: logging.LogRecord) -> None:
        found = _repeated_keys.get()
        if found is not None and str(record.msg).startswith("Multiple definitions in dictionary"):
            key = str(record.args.get("key", "?")) if isinstance(record.args, dict) else "?"
            if key not in REPEATABLE_KEYS:
                found.append(key)
        elif record.levelno >= logging.ERROR:
            logging.getLogger("pypdf").handle(record)


# The logger of the module that parses dictionaries, whatever pypdf names it; its own level, so
# quieting the "pypdf" logger elsewhere does not blind this check.
_DICTIONARY_LOG = logging.getLogger(DictionaryObject.__module__)
_DICTIONARY_LOG.setLevel(logging.WARNING)
_DICTIONARY_LOG.propagate = False
_DICTIONARY_LOG.handlers = [_RepeatedKeyLog()]


@contextmanager
def refusing_repeated_keys() -> Iterator[None]:
    """Refuse the PDF (`pdf_ambiguous`) if a dictionary parsed inside this block repeats a key."""
    found: list[str] = []
    token = _repeated_keys.set(found)
    try:
        yield
    finally:
        _repeated_keys.reset(token)
    if found:
        raise Rejected("pdf_ambiguous", f"A dictionary repeats the key {found[0][:40]}.")


# ---------------------------------------------------------------------------------------------
# The walk


def scan(reader: PdfReader, limits: ScanLimits) -> None:
    """Visit every object reachable from the trailer; refuse what the module docstring lists."""
    seen: set[tuple[int, int]] = set()
    stack: list[object] = [reader.trailer]
    visited = 0
    decompressed = 0
    max_objects = min(limits.max_objects, max(OBJECTS_FLOOR, limits.file_bytes * OBJECTS_PER_BYTE))
    while stack:
        node = stack.pop()
        if isinstance(node, IndirectObject):
            key = (node.idnum, node.generation)
            if key in seen:
                continue
            seen.add(key)
            node = node.get_object()
        visited += 1
        if visited > max_objects:
            raise Rejected("pdf_too_large", f"More than {max_objects} objects.")
        if isinstance(node, DictionaryObject):
            _check_actions(node)
            if isinstance(node, StreamObject):
                decompressed += _stream_size(node, limits)
                if decompressed > limits.max_decompressed_bytes:
                    raise Rejected("pdf_too_large", "Decompressed content exceeds the limit.")
            stack.extend(node.values())
        elif isinstance(node, ArrayObject):
            stack.extend(node)
    if isinstance(reader, Reader) and reader._object_stream_budget < 0:  # in case pypdf swallowed the refusal
        raise Rejected("pdf_too_large", "Object streams inflate far beyond the file's size.")
    _check_xfa(reader)


def _stream_size(stream: StreamObject, limits: ScanLimits) -> int:
    """The bytes this stream counts for: decoded, or as stored for an image (never decoded here)."""
    _normalize_filters(stream)
    if _get(stream, "/Subtype") == "/Image" or ("/Width" in stream and "/Height" in stream):  # thumbnails have no /Subtype
        _check_pixels(stream, limits)
        return len(stream._data)
    # Anything else is decoded, an image filter included: a content stream in JBIG2 is a bomb for
    # the viewer that decodes it (and no JBIG2 decoder is installed here: pdf_corrupt).
    try:
        data = stream.get_data()
    except NotImplementedError:  # a filter no reader implements (pypdf names the known ones)
        return len(stream._data)
    if _get(stream, "/Type") == "/EmbeddedFile" and data[:4].startswith(EXECUTABLE_MAGIC):
        raise Rejected("pdf_active_content", "An embedded file is an executable.")
    return len(data)


def _normalize_filters(stream: StreamObject) -> None:
    value = stream.get("/Filter")
    value = value.get_object() if isinstance(value, IndirectObject) else value
    names = list(value) if isinstance(value, ArrayObject) else [value] if value is not None else []
    if any(str(name) in ABBREVIATED_FILTERS for name in names):
        full = [NameObject(ABBREVIATED_FILTERS.get(str(name), str(name))) for name in names]
        stream[NameObject("/Filter")] = ArrayObject(full) if isinstance(value, ArrayObject) else full[0]


def _check_pixels(image: StreamObject, limits: ScanLimits) -> None:
    width, height = _get(image, "/Width"), _get(image, "/Height")
    if isinstance(width, NumberObject) and isinstance(height, NumberObject):
        pixels = int(width) * int(height)
        if pixels > limits.max_image_pixels:
            raise Rejected("pdf_too_large", f"An image has {pixels} pixels, limit {limits.max_image_pixels}.")


def _get(node: DictionaryObject, key: str) -> object:
    """`node[key]` resolved: viewers follow a reference wherever a value stands (`/S 12 0 R` is as good as `/S /Launch`)."""
    value = node.get(key)
    return value.get_object() if isinstance(value, IndirectObject) else value


def _check_actions(node: DictionaryObject) -> None:
    kind = _get(node, "/S")
    kind = kind if isinstance(kind, str) else None  # /S is a name in an action; elsewhere it may be anything
    if kind == "/JavaScript" or "/JS" in node:
        code = _script(node.get("/JS"))
        if code.strip(" \t\r\n;") and not (len(code) <= 2000 and _FIELD_FORMAT.fullmatch(code)):
            raise Rejected("pdf_active_content", "JavaScript.")
    elif kind == "/Launch":
        raise Rejected("pdf_active_content", "A launch action.")
    elif kind in FILE_ACTIONS:
        if any(_outside(name) for name in _file_names(node.get("/F"))):
            raise Rejected("pdf_active_content", "An action opens a file outside the document.")
    elif kind in ADDRESS_ACTIONS:
        targets = [*_file_names(node.get("/F")), *_file_names(node.get("/URI"))]
        if any(_file_share(name) for name in targets):
            raise Rejected("pdf_active_content", "A link opens a file share.")
    attachment = _get(node, "/Type") == "/Filespec" or "/EF" in node
    if attachment and any(name.lower().endswith(EXECUTABLE_SUFFIXES) for name in _file_names(node)):
        raise Rejected("pdf_active_content", "An embedded file is an executable.")


def _script(value: object) -> str:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    if isinstance(value, StreamObject):
        return value.get_data().decode("latin-1")
    return "" if value is None or isinstance(value, NullObject) else str(value)


def _file_names(spec: object) -> list[str]:
    """The file names a file specification (a string or a dictionary) gives."""
    spec = spec.get_object() if isinstance(spec, IndirectObject) else spec
    if isinstance(spec, DictionaryObject):
        values = [spec.get(key) for key in FILESPEC_KEYS]
        return [str(v.get_object()) for v in values if v is not None and not isinstance(v, DictionaryObject | ArrayObject)]
    return [] if spec is None or isinstance(spec, NullObject) else [str(spec)]


def _file_share(name: str) -> bool:
    """A UNC path or a file-share URL: opening it makes the viewer's system log in to that host."""
    target = name.strip().replace("\\", "/").lower()
    return target.startswith("//") or target.startswith(NETWORK_SCHEMES)


def _outside(name: str) -> bool:
    """Not a plain name relative to the document: absolute (`/server/share/…` is UNC on Windows), a drive or a URL."""
    target = name.strip().replace("\\", "/")
    return target.startswith("/") or ":" in target


def _check_xfa(reader: PdfReader) -> None:
    """An XFA form's scripts (JavaScript or FormCalc, both can reach the network) run like any other."""
    root = reader.trailer.get("/Root")
    root = root.get_object() if root is not None else None
    form = root.get("/AcroForm") if isinstance(root, DictionaryObject) else None
    form = form.get_object() if form is not None else None
    xfa = form.get("/XFA") if isinstance(form, DictionaryObject) else None
    xfa = xfa.get_object() if xfa is not None else None
    parts = list(xfa)[1::2] if isinstance(xfa, ArrayObject) else [xfa]
    packets = [part.get_object() for part in parts if part is not None]
    template = b"".join(packet.get_data() for packet in packets if isinstance(packet, StreamObject))
    if _xfa_has_script(template):
        raise Rejected("pdf_active_content", "A script in an XFA form.")


def _xfa_has_script(xml: bytes) -> bool:
    for start in _XFA_SCRIPT.finditer(xml):
        if start[1]:
            continue  # <script/>: empty
        end = _XFA_SCRIPT_END.search(xml, start.end())
        body = xml[start.end() : end.start()] if end else xml[start.end() :]
        if body.replace(b"<![CDATA[", b"").replace(b"]]>", b"").strip():
            return True
    return False


# ---------------------------------------------------------------------------------------------
# The same bytes read as something else


def check_polyglot(data: bytes) -> None:
    """A PDF whose bytes are also a ZIP archive: refused, and named as active content if it carries an executable.

    ZIP readers look for the archive's directory from the end, so a PDF followed (or
    preceded) by a zip opens as both: the archive is invisible to a PDF viewer and to our walk.
    """
    if b"PK\x05\x06" not in data[-(65536 + 22) :]:
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            executable = any(entry.filename.lower().endswith(EXECUTABLE_SUFFIXES) for entry in entries) or any(
                _starts_executable(archive, entry) for entry in entries[:1000]
            )
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return  # those bytes do not make an archive any tool opens
    if executable:
        raise Rejected("pdf_active_content", "The file is also a ZIP archive holding an executable.")
    if entries:
        raise Rejected("pdf_ambiguous", "The file is also a ZIP archive.")


def _starts_executable(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bool:
    if entry.is_dir() or entry.flag_bits & 0x1:
        return False
    try:
        with archive.open(entry) as member:
            return member.read(4).startswith(EXECUTABLE_MAGIC)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError):
        return False
