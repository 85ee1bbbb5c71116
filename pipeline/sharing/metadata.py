"""The document-sharing metadata of a document: given at intake, read from a CDA header, kept at index time.

Senders give it in the manifest's optional columns (README, "Interoperability") or in an MHD
DocumentReference (pipeline/ingest/mhd.py); the item carries it as JSON (`batch_items.sharing`) to the
worker, which keeps it in `document_sharing` with the document (`store_sharing`, one statement per message at index time).
A CDA R2 document's own header wins over what was declared for the fields it gives, as its own type code
does for classification.

A document's status and version are its life, not metadata: `status_of` is the one place that says it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from pipeline.index.base import text_widths
from pipeline.index.models import DocumentSharing
from pipeline.index.repo import insert_ignore
from pipeline.sharing.valuesets import ValueSetName, lookup

if TYPE_CHECKING:
    from pipeline.access.recordview import PolicyRow  # a Document, or a row of its columns (the listing's page)

# The manifest's optional sharing columns, named as the document_sharing columns they fill.
SHARING_COLUMNS = (
    "unique_id", "confidentiality", "practice_setting", "facility_type", "format_code", "language",
    "event_codes", "author_given", "author_family", "author_facility",
)  # fmt: skip
# Columns whose codes must be in a value set (pipeline/sharing/data).
CODED = {
    "confidentiality": ValueSetName.CONFIDENTIALITY,
    "practice_setting": ValueSetName.PRACTICE_SETTINGS,
    "facility_type": ValueSetName.FACILITY_TYPES,
    "format_code": ValueSetName.FORMATS,
    "language": ValueSetName.LANGUAGES,
}
WIDTHS: dict[str, int] = text_widths(DocumentSharing, SHARING_COLUMNS)


def status_of(document: PolicyRow) -> str:
    """The document's DocumentReference.status (current | superseded | entered-in-error): its version's standing
    (pipeline/documents/versions.py). A replaced or deprecated version reads `superseded`; a withdrawn one
    `entered-in-error`, though no search shows it (pipeline/sharing/search.py `status_filter`)."""
    return str(document.status)


def problem_of(fields: Mapping[str, str]) -> tuple[str, str] | None:
    """(reason, detail) when a sharing field cannot be kept: a code outside its value set, or too long."""
    for name in SHARING_COLUMNS:
        value = fields.get(name) or ""
        if not value:
            continue
        if len(value) > WIDTHS[name] or "\x00" in value:
            return "invalid_metadata", f"{name} is longer than {WIDTHS[name]} characters"
        coded = CODED.get(name)
        if coded is not None and lookup(coded, value) is None:
            return "unknown_code", f"{name} {value!r} is not in the {coded} value set"
    return None


def sharing_json(fields: Mapping[str, str | None]) -> str | None:
    """The item's `sharing` column: the sharing fields given, as JSON; None when none is."""
    given = {name: fields[name] for name in SHARING_COLUMNS if fields.get(name)}
    return json.dumps(given, sort_keys=True, ensure_ascii=False) if given else None


def _from_cda(header: Mapping[str, str]) -> dict[str, str]:
    """The header's values that can be kept as they are (codes in their value sets, widths respected)."""
    kept: dict[str, str] = {}
    for name, value in header.items():
        if name not in SHARING_COLUMNS or not value or len(value) > WIDTHS[name]:
            continue
        coded = CODED.get(name)
        if coded is None or lookup(coded, value) is not None:
            kept[name] = value
    return kept


def merged(declared: str | None, cda_header: Mapping[str, str] | None) -> dict[str, str]:
    """The sharing fields to keep: what was declared, overridden by the CDA header's own valid values."""
    fields: dict[str, str] = json.loads(declared) if declared else {}
    fields.update(_from_cda(cda_header or {}))
    return {name: value for name, value in fields.items() if name in SHARING_COLUMNS and value}


# A newly indexed document's id, the sharing fields its item declared (`sharing_json`) and its CDA header.
Declared = tuple[str, str | None, Mapping[str, str] | None]


def store_sharing(session: Session, documents: Sequence[Declared]) -> None:
    """Keep newly indexed documents' sharing metadata (nothing for one that has none), in the caller's
    transaction, after the documents' rows (the sharing rows refer to them): one statement for them all."""
    rows = [
        {"document_id": document_id, **dict.fromkeys(SHARING_COLUMNS), **fields}
        for document_id, declared, cda_header in documents
        if (fields := merged(declared, cda_header))
    ]
    insert_ignore(session, DocumentSharing, rows)
