"""Stable rejection reason codes and the errors that carry them.

A reason code is part of the public surface: senders' IT teams match on it. Never rename one;
add a new code instead. Messages are for humans and never contain patient data.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # intake (manifest level)
    "missing_file": "The manifest lists this file but the batch does not contain it.",
    "unlisted_file": "The batch contains this file but the manifest does not list it.",
    "invalid_manifest_row": "The manifest row is malformed or misses a required field.",
    "duplicate_manifest_row": "The manifest lists this file more than once.",
    # archive (the whole batch is refused, nothing is recorded)
    "archive_absolute_path": "An archive entry has an absolute path.",
    "archive_path_traversal": "An archive entry's path climbs out of the archive ('..').",
    "archive_symlink": "An archive entry is a symbolic link.",
    "archive_duplicate_name": "Two archive entries (or uploaded files) have the same name.",
    "archive_encrypted": "An archive entry is encrypted.",
    "archive_nested_too_deep": "The archive holds a zip that itself holds a zip (one level of nesting at most).",
    "archive_too_many_entries": "The archive lists more entries, or has a larger directory, than the configured limits.",
    "archive_too_large": "The archive's total uncompressed size exceeds the configured limit.",
    "archive_ratio_exceeded": "An archive entry, or the whole archive, is compressed beyond the configured ratio (a zip bomb).",
    # content
    "archive_entry_corrupt": "The uploaded zip's entry holding this file cannot be read (bad CRC, damaged or unsupported compression).",
    "empty_file": "The file is empty.",
    "file_too_large": "The file exceeds the configured maximum size.",
    "unsupported_type": "The file type is not accepted (PDF, CDA R2 XML, JPEG, PNG, TIFF, text).",
    "type_mismatch": "The declared file type does not match the file's content.",
    "pdf_corrupt": "The PDF cannot be read (damaged or truncated).",
    "pdf_encrypted": "The PDF is password-protected or encrypted.",
    "pdf_active_content": "The PDF contains JavaScript, a launch action, an action opening a file outside it, or an executable.",
    "pdf_too_large": "The PDF has more pages, objects, decompressed bytes or image pixels than the configured limits.",
    "pdf_ambiguous": "Readers would not all see the same document (a dictionary repeats a key, or the file is also an archive).",
    "image_corrupt": "The image's header cannot be read (damaged or truncated).",
    "image_too_large": "The image has more pixels (or frames) than the configured limits.",
    "xml_malformed": "The XML document is not well-formed.",
    "xml_forbidden_construct": "The XML document uses forbidden constructs (DTD, entities).",
    "patient_mismatch": "The patient identifier inside the document differs from the manifest.",
    "validation_timeout": "Checking this file took longer than the per-document time limit.",
    "validation_failed": "The checker could not finish on this file (memory limit or crash); it is likely malformed.",
    # identity and record
    "invalid_ins": "The patient INS (NIR) is malformed or its control key is wrong.",
    "record_closed": "The patient's record is closed or was opposed; it accepts no document.",
    "invalid_metadata": "A metadata field is invalid (unparsable or future date, bad value).",
    "duplicate_conflict": (
        "A different document was already received under this source document id (send version_action=replace to replace it)."
    ),
    "other_patients_document": (
        "This source document id is a document of another patient's record: a document sent to the wrong patient is withdrawn,"
        " then sent under a new source document id."
    ),
    "document_withdrawn": "The source withdrew the document of this source document id (entered in error); it takes no new version.",
    "unknown_code": "A code is not in its value set (type, class, confidentiality, facility type, practice setting, format, language).",
    # FHIR MHD submissions (ITI-65): the whole Bundle is refused, nothing is recorded
    "bundle_invalid": "The Bundle is not a valid FHIR R4 MHD transaction (structure, missing SubmissionSet or DocumentReference).",
    "binary_missing": "A DocumentReference's attachment points at no Binary in the Bundle and carries no data.",
    "size_mismatch": "A DocumentReference's attachment size differs from the size of its bytes.",
    "hash_mismatch": "A DocumentReference's attachment hash (SHA-1) differs from the hash of its bytes.",
    "bundle_too_large": "The Bundle holds more documents than allowed.",
    "replacement_not_supported": (
        "Only relatesTo replaces is supported; a document is provided current, or changed entered-in-error or superseded (no relatesTo)."
    ),
    "replaced_document_not_found": "The document a relatesTo replaces, or a status change names, is not one of this source's documents.",
    "patient_identifier_invalid": "The patient is not identified by an INS with its OID (urn:oid:1.2.250.1.213.1.4.8, .9 or .10).",
    # processing
    "processing_crashed": "Processing this document failed repeatedly (worker crashed); it was set aside.",
    "retries_exhausted": "Processing failed with an unexpected error through every retry; run the same intake again to resume it.",
}


class Rejected(Exception):
    """Permanent failure: bad input. The item ends `rejected` and is never retried."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason = reason
        self.message = REASONS[reason] if not detail else f"{REASONS[reason]} {detail}"
        super().__init__(reason)


class Transient(Exception):
    """A temporary failure (storage, database, broker unreachable): retried with backoff.

    The text is a code and ids only, because dramatiq copies the traceback into the message
    it stores in Redis.
    """
