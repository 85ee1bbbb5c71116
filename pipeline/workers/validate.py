"""Validation of one document: metadata, identity, type sniffing and format checks.

Plain functions raising `Rejected(reason)`; no broker, no database. Their complete versions
(active content, limits, subprocess containment) are issue 3.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import magic

from pipeline.identity import INS_OIDS, is_valid_nir, normalize_nir
from pipeline.reasons import Rejected

CDA_NS = "urn:hl7-org:v3"
SNIFF_BYTES = 8192

# Canonical MIME type by what libmagic reports.
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


@dataclass(frozen=True)
class Metadata:
    ins: str
    source_document_id: str
    service_date: dt.date


@dataclass(frozen=True)
class Content:
    mime_type: str
    pages: int | None = None
    cda_code: str | None = None
    cda_ins: str | None = None


def check_metadata(fields: dict[str, str | None], today: dt.date) -> Metadata:
    """The manifest fields of one document: INS (format and key), ids, a past service date."""
    ins = normalize_nir(fields.get("patient_ins") or "")
    if not is_valid_nir(ins):
        raise Rejected("invalid_ins")
    source_document_id = (fields.get("source_document_id") or "").strip()
    if not source_document_id:
        raise Rejected("invalid_metadata", "source_document_id is empty.")
    for name in ("author_id", "author_profession"):
        if not (fields.get(name) or "").strip():
            raise Rejected("invalid_metadata", f"{name} is empty.")
    try:
        service_date = dt.date.fromisoformat((fields.get("service_date") or "").strip()[:10])
    except ValueError:
        raise Rejected("invalid_metadata", "service_date is not an ISO date (YYYY-MM-DD).") from None
    if service_date > today:
        raise Rejected("invalid_metadata", "service_date is in the future.")
    return Metadata(ins, source_document_id, service_date)


def sniff(path: Path, filename: str) -> str:
    """The document's MIME type from its bytes, checked against the type its name declares."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise Rejected("empty_file")
    detected = ACCEPTED.get(magic.from_buffer(head, mime=True))
    declared = BY_EXTENSION.get(PurePosixPath(filename).suffix.lower())
    if detected is None:
        raise Rejected("type_mismatch" if declared else "unsupported_type")
    if declared and declared != detected:
        raise Rejected("type_mismatch", f"Named as {declared}, content is {detected}.")
    return detected


def check_pdf(path: Path) -> int:
    """Open the PDF and count its pages; a truncated, encrypted or unreadable file is rejected."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1024))
        if b"%%EOF" not in handle.read():
            raise Rejected("pdf_corrupt", "No end-of-file marker: the file is truncated.")
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            raise Rejected("pdf_encrypted")
        pages = len(reader.pages)
    except Rejected:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        raise Rejected("pdf_corrupt") from None
    if pages < 1:
        raise Rejected("pdf_corrupt", "The PDF has no page.")
    return pages


def check_xml(path: Path, expected_ins: str) -> tuple[str | None, str | None]:
    """Parse safely (no DTD, no entities); for a CDA R2 document return its code and patient INS."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, parse

    try:
        root = parse(path, forbid_dtd=True).getroot()
    except DefusedXmlException:
        raise Rejected("xml_forbidden_construct") from None
    except ParseError:
        raise Rejected("xml_malformed") from None
    if root.tag != f"{{{CDA_NS}}}ClinicalDocument":
        return None, None
    ns = {"h": CDA_NS}
    code = root.find("h:code", ns)
    ids = root.findall("h:recordTarget/h:patientRole/h:id", ns)
    ins = next((normalize_nir(i.get("extension", "")) for i in ids if i.get("root") in INS_OIDS), None)
    if ins is not None and ins != expected_ins:
        raise Rejected("patient_mismatch")
    return (code.get("code") if code is not None else None), ins


def check_content(path: Path, filename: str, expected_ins: str) -> Content:
    """Sniff and check one spooled document."""
    mime = sniff(path, filename)
    if mime == "application/pdf":
        return Content(mime, pages=check_pdf(path))
    if mime == "application/xml":
        code, ins = check_xml(path, expected_ins)
        return Content(mime, cda_code=code, cda_ins=ins)
    return Content(mime)
