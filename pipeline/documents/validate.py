"""Validation of one document: its metadata here, its bytes in the sandboxed inspector.

Plain functions raising `Rejected(reason)`; no broker, no database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.core.identity import is_valid_nir, normalize_nir
from pipeline.core.reasons import Rejected
from pipeline.core.settings import Settings
from pipeline.documents.inspect import Content, InspectLimits, inspect_file
from pipeline.documents.sandbox import Limits, SandboxFailed, SandboxTimeout, descriptor_path, frozen_copy, run_contained


@dataclass(frozen=True)
class Metadata:
    ins: str
    source_document_id: str
    service_date: dt.date
    hold_until: dt.date | None = None  # the announcement consultation the author holds the document until


def check_metadata(fields: Mapping[str, str | None], today: dt.date) -> Metadata:
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
    if (fields.get("version_action") or "").strip() not in ("", "replace"):
        raise Rejected("invalid_metadata", "version_action is neither empty nor 'replace'.")
    hold = (fields.get("announcement_date") or "").strip()
    try:
        hold_until = dt.date.fromisoformat(hold) if hold else None
    except ValueError:
        raise Rejected("invalid_metadata", "announcement_date is not an ISO date (YYYY-MM-DD).") from None
    return Metadata(ins, source_document_id, service_date, hold_until)


def inspect_limits(settings: Settings) -> InspectLimits:
    return InspectLimits(
        max_pdf_pages=settings.pdf_max_pages,
        max_decompressed_bytes=settings.pdf_max_decompressed_bytes,
        max_image_pixels=settings.image_max_pixels,
    )


def check_content(document: Path | BinaryIO, filename: str, expected_ins: str, settings: Settings, want_text: bool) -> Content:
    """Inspect a document's bytes in the sandbox (or in-process when DMP_VALIDATION_SANDBOX is off).

    `document` is the worker's frozen `anonymous_file` (its descriptor is what the child gets), or a
    path, first copied into one (`frozen_copy`): the child cannot open paths.
    """
    with frozen_copy(document) if isinstance(document, Path) else nullcontext(document.fileno()) as fd:
        args = (filename, expected_ins, inspect_limits(settings), want_text)
        if not settings.validation_sandbox:
            return inspect_file(descriptor_path(fd), *args)
        limits = Limits(seconds=settings.validation_timeout_seconds, memory_bytes=settings.validation_memory_bytes)
        try:
            content = run_contained(inspect_file, args, limits, document=fd)
        except SandboxTimeout:
            raise Rejected("validation_timeout", f"No verdict within {settings.validation_timeout_seconds:g} s.") from None
        except SandboxFailed:
            raise Rejected("validation_failed") from None
    if not isinstance(content, Content):
        raise Rejected("validation_failed")
    return content
