"""Validation of one document: its metadata here, its bytes in the sandboxed inspector.

Plain functions raising `Rejected(reason)`; no broker, no database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.core.identity import is_valid_nir, normalize_nir
from pipeline.core.reasons import Rejected
from pipeline.core.settings import Settings
from pipeline.documents.childwire import descriptor_path, frozen_copy
from pipeline.documents.inspect import Content, InspectLimits, inspect_file
from pipeline.documents.sandbox import (
    Call,
    Limits,
    Outcome,
    SandboxFailed,
    SandboxTimeout,
    prepare,
    run_contained_many,
)


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


@dataclass(frozen=True)
class ContentCheck:
    """One document to inspect: its bytes (the worker's frozen `anonymous_file`, or a path, first copied
    into one by `frozen_copy`: the child cannot open paths) and what its verdict depends on."""

    document: Path | BinaryIO
    filename: str
    expected_ins: str
    want_text: bool


def check_content(document: Path | BinaryIO, filename: str, expected_ins: str, settings: Settings, want_text: bool) -> Content:
    """Inspect a document's bytes in the sandbox (or in-process when DMP_VALIDATION_SANDBOX is off); raises Rejected."""
    verdict = check_contents([ContentCheck(document, filename, expected_ins, want_text)], settings)[0]
    if isinstance(verdict, Rejected):
        raise verdict
    return verdict


def check_contents(checks: Sequence[ContentCheck], settings: Settings) -> list[Content | Rejected]:
    """`check_content` for each of a message's documents, in one exchange with the sandbox's child
    (`run_contained_many`): each keeps its own time and memory limits and its own verdict, the same
    as one at a time. A verdict is the document's Content or the Rejected it would raise."""
    limits = inspect_limits(settings)
    with ExitStack() as copies:
        fds = [copies.enter_context(frozen_copy(c.document)) if isinstance(c.document, Path) else c.document.fileno() for c in checks]
        if not settings.validation_sandbox:
            return [_in_process(fd, check, limits) for fd, check in zip(fds, checks, strict=True)]
        calls = [Call((c.filename, c.expected_ins, limits, c.want_text), fd) for fd, c in zip(fds, checks, strict=True)]
        outcomes = run_contained_many(inspect_file, calls, _sandbox_limits(settings))
    return [_verdict(outcome, settings) for outcome in outcomes]


def prepare_sandbox(settings: Settings) -> None:
    """Start the calling thread's sandboxed inspector ahead, in the background (`sandbox.prepare`): a worker
    thread does at its boot, so that its first message does not wait for the child's interpreter to start."""
    if settings.validation_sandbox:
        prepare(inspect_file, _sandbox_limits(settings))


def _sandbox_limits(settings: Settings) -> Limits:
    return Limits(seconds=settings.validation_timeout_seconds, memory_bytes=settings.validation_memory_bytes)


def _in_process(fd: int, check: ContentCheck, limits: InspectLimits) -> Content | Rejected:
    try:
        return inspect_file(descriptor_path(fd), check.filename, check.expected_ins, limits, check.want_text)
    except Rejected as rejection:
        return rejection


def _verdict(outcome: Outcome, settings: Settings) -> Content | Rejected:
    try:
        content = outcome.result()
    except Rejected as rejection:
        return rejection
    except SandboxTimeout:
        return Rejected("validation_timeout", f"No verdict within {settings.validation_timeout_seconds:g} s.")
    except SandboxFailed:
        return Rejected("validation_failed")
    return content if isinstance(content, Content) else Rejected("validation_failed")
