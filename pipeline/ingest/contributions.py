"""The patient's own documents, received over HTTP: the same intake as a source's single document.

The patient sends a `metadata` part (title, document type, optionally service date, their own id for the
document and `version_action`) and a `file` part. The metadata is completed into the manifest row a source
would send (the record's INS, the author) and the upload goes through `receive_document`: inbox, batch and
item rows, one message, then the same validation, classification (class 90, pipeline/documents/contributed.py),
encryption and index as any deposit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import BinaryIO

from pipeline.core.clock import paris_date
from pipeline.documents.contributed import PATIENT_TYPES, patient_source
from pipeline.index.base import new_id
from pipeline.ingest.intake import IntakeResult
from pipeline.ingest.uploads import UploadRejected, metadata_manifest, receive_document
from pipeline.runtime import Runtime

CONTRIBUTION_FIELDS = ("title", "document_type", "service_date", "source_document_id", "version_action")


def contribution_manifest(metadata: bytes, file_name: str, *, ins: str, author_id: str, author_kind: str) -> bytes:
    """The one-row manifest of a patient's upload, from the fields they may set; UploadRejected when unusable."""
    try:
        fields = json.loads(metadata)
    except ValueError:
        raise UploadRejected("metadata_invalid", "the metadata part is not JSON") from None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise UploadRejected("metadata_invalid", "the metadata must be a JSON object of strings")
    unknown = sorted(set(fields) - set(CONTRIBUTION_FIELDS))
    if unknown:
        raise UploadRejected("metadata_invalid", f"metadata fields unknown: {unknown} (allowed: {', '.join(CONTRIBUTION_FIELDS)})")
    if not fields.get("title", "").strip():
        raise UploadRejected("metadata_invalid", "title is required")
    if fields.get("document_type") not in PATIENT_TYPES:
        raise UploadRejected("metadata_invalid", f"document_type must be one of {', '.join(PATIENT_TYPES)}")
    row = {
        "patient_ins": ins,
        # The patient's own id for the document, to replace it later; a fresh one otherwise.
        "source_document_id": fields.get("source_document_id") or new_id(),
        "title": fields["title"],
        "document_type": fields["document_type"],
        "service_date": fields.get("service_date") or paris_date().isoformat(),
        "author_id": author_id,
        "author_profession": author_kind,
        "version_action": fields.get("version_action") or None,
    }
    return metadata_manifest(json.dumps(row).encode(), file_name)


def receive_contribution(
    rt: Runtime, body: BinaryIO, boundary: bytes, patient_id: str, ins: str, author_id: str, author_kind: str, send: Callable[[str], None]
) -> IntakeResult:
    """One document of the patient's (multipart `metadata` + `file`) into the intake, as `receive_document` takes a source's."""
    manifest_of = partial(contribution_manifest, ins=ins, author_id=author_id, author_kind=author_kind)
    return receive_document(rt, body, boundary, patient_source(patient_id), send, manifest_of=manifest_of)


FORM_FIELDS = ("csrf", "title", "document_type", "service_date")


def receive_contribution_form(
    rt: Runtime,
    body: BinaryIO,
    boundary: bytes,
    patient_id: str,
    ins: str,
    author_id: str,
    author_kind: str,
    admit: Callable[[str], bool],
    send: Callable[[str], None],
) -> IntakeResult:
    """The same upload from the portal's HTML form: fields (csrf, title, document_type, service_date) then `file`.

    The fields become the metadata a `metadata` part would carry, checked by the same rules; `admit` checks the
    form's CSRF token before a byte of the file is stored (UploadRejected `csrf_failed` otherwise)."""

    def admitted(values: dict[str, bytes]) -> None:
        if not admit(values.get("csrf", b"").decode("utf-8", errors="replace")):
            raise UploadRejected("csrf_failed", "the form's token does not match the session")

    def metadata_of(values: dict[str, bytes]) -> bytes:
        texts = {name: values[name].decode("utf-8", errors="replace").strip() for name in FORM_FIELDS[1:] if name in values}
        return json.dumps({name: text for name, text in texts.items() if text}).encode()

    manifest_of = partial(contribution_manifest, ins=ins, author_id=author_id, author_kind=author_kind)
    form = (FORM_FIELDS, metadata_of, admitted)
    return receive_document(rt, body, boundary, patient_source(patient_id), send, manifest_of=manifest_of, form=form)
