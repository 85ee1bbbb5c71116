"""Inspecting a document's bytes: type sniffing, PDF, CDA XML and text checks, text extraction.

These functions parse hostile input. They run inside the sandbox (`sandbox.run_contained`) and
must end in a verdict: a `Content` or a `Rejected` with its reason, never another exception.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element

import magic
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, parse
from pypdf.errors import LimitReachedError

from pipeline.core.identity import INS_OIDS, is_valid_nir, normalize_nir
from pipeline.core.reasons import Rejected
from pipeline.documents import images, pdfscan

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
PDF_HEADER_WINDOW = 1024  # bytes viewers accept before %PDF-
# What libmagic calls bytes it cannot name: a PDF header after a prefix makes them a PDF.
UNNAMED = ("application/octet-stream", "text/plain")

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
    max_image_pixels: int = 178_956_970  # Pillow's decompression-bomb limit
    text_pages: int = 5
    text_chars: int = 20_000
    text_seconds: float = 5.0  # text only helps classify: past this, the document goes on with what was read


@dataclass(frozen=True)
class Content:
    mime_type: str
    pages: int | None = None
    cda_code: str | None = None
    cda_code_system: str | None = None  # the OID the code is given in (LOINC: 2.16.840.1.113883.6.1)
    cda_ins: str | None = None
    title: str | None = None
    text: str | None = None  # for classification only: kept in memory, never stored
    # A CDA R2 header's document-sharing fields (see `sharing_header`), read as given: pipeline/sharing checks them.
    header: dict[str, str] | None = None


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
    if reported in UNNAMED and declared in (None, "application/pdf") and head.find(b"%PDF-", 0, PDF_HEADER_WINDOW + 5) > 0:
        detected = "application/pdf"  # bytes before the header, as viewers accept
    if detected is None:
        if declared:
            raise Rejected("type_mismatch", f"Named as {declared}, content is {reported}.")
        raise Rejected("unsupported_type", f"Content is {reported}.")
    if declared and declared != detected:
        raise Rejected("type_mismatch", f"Named as {declared}, content is {detected}.")
    return detected


def _check_header(data: bytes) -> None:
    """`%PDF-` within the first 1024 bytes: viewers accept what comes before it (transfer headers, a BOM)."""
    if data.find(b"%PDF-", 0, PDF_HEADER_WINDOW + 5) < 0:
        raise Rejected("pdf_corrupt", "No %PDF- header in the first 1024 bytes.")


def _has_eof_marker(data: bytes) -> bool:
    """A complete PDF ends its last revision with %%EOF; whatever follows it (padding, a signature) is ignored by viewers."""
    return data.rfind(b"%%EOF") > 0


def _open(data: bytes) -> pdfscan.Reader:
    """Open the PDF; one encrypted with an empty user password (printing or copying restricted) opens as viewers open it."""
    reader = pdfscan.Reader(data)
    if reader.is_encrypted:
        try:
            opened = bool(reader.decrypt(""))  # PasswordType.NOT_DECRYPTED is 0
        except Exception:  # noqa: BLE001 - an encryption pypdf cannot undo is one we cannot check
            opened = False
        if not opened:
            raise Rejected("pdf_encrypted", "It needs a password to open.")
    return reader


class _OutOfTime(Exception):
    pass


def _extract_text(reader: pdfscan.Reader, limits: InspectLimits) -> str:
    """Text of the first pages, for classification only: a page whose text cannot be read ends the text, never the document.

    A page of nested forms can cost pypdf tens of seconds (each form re-reads its fonts): text
    extraction stops at `limits.text_seconds`, checked before each drawing operator.
    """
    deadline = time.monotonic() + limits.text_seconds

    def on_time(*_: object) -> None:
        if time.monotonic() > deadline:
            raise _OutOfTime

    parts: list[str] = []
    size = 0
    try:
        for page in list(reader.pages)[: limits.text_pages]:
            text = page.extract_text(visitor_operand_before=on_time) or ""
            parts.append(text)
            size += len(text)
            if size >= limits.text_chars:
                break
    except Exception:  # noqa: BLE001 - the document stays; with no text it is classified from its title, or reviewed
        pass
    return "\n".join(parts)[: limits.text_chars]


def check_pdf(path: Path, limits: InspectLimits, want_text: bool) -> Content:
    """Open the PDF as a viewer would and refuse it only for what pdfscan lists: active content, ambiguity, sizes."""
    data = path.read_bytes()
    _check_header(data)
    if not _has_eof_marker(data):
        raise Rejected("pdf_corrupt", "No end-of-file marker: the file is truncated.")
    pdfscan.check_polyglot(data)
    scan_limits = pdfscan.ScanLimits(
        max_objects=limits.max_pdf_objects,
        max_decompressed_bytes=limits.max_decompressed_bytes,
        max_image_pixels=limits.max_image_pixels,
        file_bytes=len(data),
    )
    try:
        with pdfscan.refusing_repeated_keys():
            reader = _open(data)
            pages = len(reader.pages)
            if pages < 1:
                raise Rejected("pdf_corrupt", "The PDF has no page.")
            if pages > limits.max_pdf_pages:
                raise Rejected("pdf_too_large", f"{pages} pages, limit {limits.max_pdf_pages}.")
            pdfscan.scan(reader, scan_limits)
    except Rejected:
        raise
    except LimitReachedError as limit:
        raise Rejected("pdf_too_large", f"A structure exceeds the PDF reader's limits ({str(limit)[:120]}).") from None
    except MemoryError:
        raise Rejected("pdf_too_large", "Decompressed content exceeds the memory limit.") from None
    except RecursionError:
        raise Rejected("pdf_corrupt", "Structure nested too deeply.") from None
    except Exception:  # noqa: BLE001 - any parser failure on this input means the PDF is unreadable
        raise Rejected("pdf_corrupt") from None
    text = _extract_text(reader, limits) if want_text else None
    return Content("application/pdf", pages=pages, text=text)


def check_cda(path: Path, expected_ins: str) -> Content:
    """Parse safely (no DTD, no entities); a CDA R2 document gives its code, title and patient INS."""
    try:
        root = parse(path, forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException:
        raise Rejected("xml_forbidden_construct") from None
    except (ParseError, UnicodeError, ValueError, LookupError):  # LookupError: an encoding Python does not know
        raise Rejected("xml_malformed") from None
    if root is None or root.tag != f"{{{CDA_NS}}}ClinicalDocument":
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
    return Content(
        "application/xml",
        cda_code=code.get("code") if code is not None else None,
        cda_code_system=code.get("codeSystem") if code is not None else None,
        cda_ins=ins,
        title=title,
        header=sharing_header(root),
    )


# Where a CDA R2 header (French CI-SIS profile) gives the document-sharing metadata (XDS mapping).
_HEADER_PATHS = {
    "confidentiality": ("h:confidentialityCode", "code"),
    "language": ("h:languageCode", "code"),
    "practice_setting": (
        "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/h:representedOrganization/h:standardIndustryClassCode",
        "code",
    ),
    "facility_type": ("h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code", "code"),
    "author_facility": ("h:author/h:assignedAuthor/h:representedOrganization/h:name", ""),
    "author_given": ("h:author/h:assignedAuthor/h:assignedPerson/h:name/h:given", ""),
    "author_family": ("h:author/h:assignedAuthor/h:assignedPerson/h:name/h:family", ""),
}


def sharing_header(root: Element) -> dict[str, str]:
    """The header's confidentiality, language, practice setting, facility type, author, unique id and event
    codes, as strings (absent ones left out)."""
    ns = {"h": CDA_NS}
    found: dict[str, str] = {}
    for name, (path, attribute) in _HEADER_PATHS.items():
        node = root.find(path, ns)
        value = (node.get(attribute) if attribute else node.text) if node is not None else None
        if value and value.strip():
            found[name] = value.strip()
    document_id = root.find("h:id", ns)
    if document_id is not None and document_id.get("root"):
        extension = document_id.get("extension")
        found["unique_id"] = f"{document_id.get('root')}^{extension}" if extension else str(document_id.get("root"))
    events = [code.get("code") for code in root.findall("h:documentationOf/h:serviceEvent/h:code", ns)]
    if any(events):
        found["event_codes"] = " ".join(code for code in events if code)
    return found


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
    images.check_image(path, mime, limits.max_image_pixels, limits.max_pdf_pages)
    return Content(mime)
