"""Inspecting a document's bytes: type sniffing, PDF, CDA XML and text checks, text extraction.

These functions parse hostile input. They run inside the sandbox (`sandbox.run_contained`) and
must end in a verdict: a `Content` or a `Rejected` with its reason, never another exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import magic
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, parse
from pypdf import PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject, StreamObject

from pipeline.identity import INS_OIDS, is_valid_nir, normalize_nir
from pipeline.reasons import Rejected

CDA_NS = "urn:hl7-org:v3"
SNIFF_BYTES = 8192

# Canonical MIME type for what libmagic reports.
ACCEPTED = {
    "application/pdf": "application/pdf",
    "text/xml": "application/xml",
    "application/xml": "application/xml",
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/tiff": "image/tiff",
    "text/plain": "text/plain",
    # libmagic names comma-rich text CSV; it is still plain text to us.
    "text/csv": "text/plain",
}
BY_EXTENSION = {
    ".pdf": "application/pdf",
    ".xml": "application/xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".txt": "text/plain",
}
EXECUTABLE_SUFFIXES = (".exe", ".dll", ".scr", ".com", ".bat", ".cmd", ".ps1", ".vbs", ".js", ".jse", ".jar", ".msi", ".sh", ".app")
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"#!", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")

# Loaded at import: a sandbox child imports this module before it confines itself, and cannot
# read libmagic's database afterwards (it also saves tens of milliseconds per document).
_MAGIC = magic.Magic(mime=True)
# pypdf narrates every oddity of a hostile file; the verdict says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class InspectLimits:
    max_pdf_pages: int
    max_decompressed_bytes: int
    max_pdf_objects: int = 500_000
    text_pages: int = 5
    text_chars: int = 20_000


@dataclass(frozen=True)
class Content:
    mime_type: str
    pages: int | None = None
    cda_code: str | None = None
    cda_ins: str | None = None
    title: str | None = None
    text: str | None = None  # for classification only: kept in memory, never stored


def sniff(path: Path, filename: str) -> str:
    """The document's MIME type from its bytes, checked against the type its name declares."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise Rejected("empty_file")
    reported = _MAGIC.from_buffer(head)
    detected = ACCEPTED.get(reported)
    declared = BY_EXTENSION.get(PurePosixPath(filename).suffix.lower())
    if detected == "text/plain" and declared == "application/xml" and head.lstrip().startswith(b"<"):
        detected = "application/xml"  # XML without a declaration
    if detected is None:
        if declared:
            raise Rejected("type_mismatch", f"Named as {declared}, content is {reported}.")
        raise Rejected("unsupported_type", f"Content is {reported}.")
    if declared and declared != detected:
        raise Rejected("type_mismatch", f"Named as {declared}, content is {detected}.")
    return detected


def _has_eof_marker(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 2048))
        return b"%%EOF" in handle.read()


def _walk_pdf(reader, limits: InspectLimits) -> None:  # type: ignore[no-untyped-def]
    """Visit every object reachable from the trailer: find active content, total the decompressed size."""
    seen: set[tuple[int, int]] = set()
    stack: list = [reader.trailer]
    visited = 0
    decompressed = 0
    while stack:
        node = stack.pop()
        if isinstance(node, IndirectObject):
            key = (node.idnum, node.generation)
            if key in seen:
                continue
            seen.add(key)
            node = node.get_object()
        visited += 1
        if visited > limits.max_pdf_objects:
            raise Rejected("pdf_too_large", "Too many objects.")
        if isinstance(node, DictionaryObject):
            _check_actions(node)
            if isinstance(node, StreamObject):
                decompressed += len(node.get_data())
                if decompressed > limits.max_decompressed_bytes:
                    raise Rejected("pdf_too_large", "Decompressed content exceeds the limit.")
                if node.get("/Type") == NameObject("/EmbeddedFile") and node.get_data()[:4].startswith(EXECUTABLE_MAGIC):
                    raise Rejected("pdf_active_content", "An embedded file is an executable.")
            stack.extend(node.values())
        elif isinstance(node, ArrayObject):
            stack.extend(node)


def _check_actions(node) -> None:  # type: ignore[no-untyped-def]
    if "/JS" in node or "/JavaScript" in node or node.get("/S") in ("/JavaScript", "/Launch"):
        raise Rejected("pdf_active_content", "JavaScript or a launch action.")
    if node.get("/Type") == "/Filespec" or "/EF" in node:
        names = [str(node.get(key, "")) for key in ("/F", "/UF")]
        if any(name.lower().endswith(EXECUTABLE_SUFFIXES) for name in names):
            raise Rejected("pdf_active_content", "An embedded file is an executable.")


def _extract_text(reader, limits: InspectLimits) -> str:  # type: ignore[no-untyped-def]
    parts: list[str] = []
    size = 0
    for page in list(reader.pages)[: limits.text_pages]:
        text = page.extract_text() or ""
        parts.append(text)
        size += len(text)
        if size >= limits.text_chars:
            break
    return "\n".join(parts)[: limits.text_chars]


def check_pdf(path: Path, limits: InspectLimits, want_text: bool) -> Content:
    """Open the PDF and check it: readable, not encrypted, no active content, within limits."""
    if not _has_eof_marker(path):
        raise Rejected("pdf_corrupt", "No end-of-file marker: the file is truncated.")
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            raise Rejected("pdf_encrypted")
        pages = len(reader.pages)
        if pages < 1:
            raise Rejected("pdf_corrupt", "The PDF has no page.")
        if pages > limits.max_pdf_pages:
            raise Rejected("pdf_too_large", f"{pages} pages, limit {limits.max_pdf_pages}.")
        _walk_pdf(reader, limits)
        text = _extract_text(reader, limits) if want_text else None
    except Rejected:
        raise
    except (LimitReachedError, MemoryError):
        raise Rejected("pdf_too_large", "Decompressed content exceeds the limit.") from None
    except RecursionError:
        raise Rejected("pdf_corrupt", "Structure nested too deeply.") from None
    except Exception:  # noqa: BLE001 - any parser failure on this input means the PDF is unreadable
        raise Rejected("pdf_corrupt") from None
    return Content("application/pdf", pages=pages, text=text)


def check_cda(path: Path, expected_ins: str) -> Content:
    """Parse safely (no DTD, no entities); a CDA R2 document gives its code, title and patient INS."""
    try:
        root = parse(path, forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException:
        raise Rejected("xml_forbidden_construct") from None
    except (ParseError, UnicodeError, ValueError, LookupError):  # LookupError: an encoding Python does not know
        raise Rejected("xml_malformed") from None
    if root.tag != f"{{{CDA_NS}}}ClinicalDocument":
        raise Rejected("unsupported_type", "XML documents must be CDA R2 (urn:hl7-org:v3 ClinicalDocument).")
    ns = {"h": CDA_NS}
    code = root.find("h:code", ns)
    title = root.findtext("h:title", default=None, namespaces=ns)
    ids = root.findall("h:recordTarget/h:patientRole/h:id", ns)
    ins = next((normalize_nir(i.get("extension", "")) for i in ids if i.get("root") in INS_OIDS), None)
    if ins is not None:
        if not is_valid_nir(ins):
            raise Rejected("invalid_ins", "In the document's recordTarget.")
        if ins != expected_ins:
            raise Rejected("patient_mismatch")
    return Content("application/xml", cda_code=code.get("code") if code is not None else None, cda_ins=ins, title=title)


def read_text(path: Path, limits: InspectLimits) -> str:
    with path.open("rb") as handle:
        return handle.read(limits.text_chars * 4).decode("utf-8", errors="replace")[: limits.text_chars]


def inspect_file(path: Path, filename: str, expected_ins: str, limits: InspectLimits, want_text: bool) -> Content:
    """Sniff and check one spooled document; the entry point the sandbox runs."""
    mime = sniff(path, filename)
    if mime == "application/pdf":
        return check_pdf(path, limits, want_text)
    if mime == "application/xml":
        return check_cda(path, expected_ins)
    if mime == "text/plain":
        return Content(mime, text=read_text(path, limits) if want_text else None)
    return Content(mime)
