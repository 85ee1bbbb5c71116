"""The batch manifest (`manifest.csv`): one row per document, columns documented in README, "Using it"."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from pipeline.core.zipnames import file_name
from pipeline.index.base import text_widths
from pipeline.index.models import BatchItem
from pipeline.sharing.metadata import SHARING_COLUMNS, problem_of

REQUIRED_COLUMNS = (
    "file",
    "patient_ins",
    "source_document_id",
    "title",
    "service_date",
    "author_id",
    "author_profession",
)
# announcement_date: the author holds the document from the patient until the announcement consultation
# (docs/domain.md rule 1; at most one month after the deposit).
# version_action: "replace" makes changed bytes under a known source_document_id its new version
# (pipeline/documents/versions.py); empty, they are a duplicate_conflict.
# The document-sharing columns (pipeline/sharing/metadata.py) are optional too: codes from pipeline/sharing/data.
OPTIONAL_COLUMNS = ("document_type", "announcement_date", "version_action", *SHARING_COLUMNS)
# The documented column order (README, "Using it"), used when writing manifests.
MANIFEST_COLUMNS = (
    "file",
    "patient_ins",
    "source_document_id",
    "title",
    "document_type",
    "service_date",
    "author_id",
    "author_profession",
)
MANIFEST_NAME = "manifest.csv"
# The most characters of each field: the width of the batch_items column it is kept in (SQLite would keep
# anything, PostgreSQL refuses longer values and fails the whole batch's insert).
FIELD_WIDTHS: dict[str, int] = text_widths(BatchItem, REQUIRED_COLUMNS + OPTIONAL_COLUMNS)


class ManifestError(Exception):
    """The manifest as a whole is unusable (missing, not CSV, required columns absent)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ManifestRow:
    row_number: int  # 1-based data row number (the header is row 0)
    file: str
    fields: dict[str, str]


@dataclass(frozen=True)
class RowProblem:
    row_number: int
    file: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Manifest:
    rows: list[ManifestRow]
    problems: list[RowProblem]

    @property
    def listed_files(self) -> set[str]:
        return {row.file for row in self.rows}


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", delimiters=",;\t")
    except csv.Error:
        return csv.excel


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes. Structural problems of one row become RowProblems; the rest go on.

    Raises ManifestError when the file cannot serve as a manifest at all.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError("manifest_invalid", 'manifest.csv is not UTF-8 text: re-export it as UTF-8 (Excel: "CSV UTF-8")') from None
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=_dialect(text[:4096]))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise ManifestError("manifest_invalid", f"manifest.csv lacks required columns: {', '.join(missing)}")
    reader.fieldnames = header

    rows: list[ManifestRow] = []
    problems: list[RowProblem] = []
    seen: set[str] = set()
    for number, raw in enumerate(reader, start=1):
        file = file_name((raw.get("file") or "").strip())
        if None in raw or any(value is None for value in raw.values()):
            problems.append(RowProblem(number, file, "invalid_manifest_row", "wrong number of fields"))
            continue
        if not file:
            problems.append(RowProblem(number, file, "invalid_manifest_row", "empty 'file' field"))
            continue
        if file in seen:
            problems.append(RowProblem(number, file, "duplicate_manifest_row", f"row {number}"))
            continue
        seen.add(file)
        fields = {key: (value or "").strip() for key, value in raw.items() if key in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
        unstorable = _unstorable(fields)
        if unstorable:
            problems.append(RowProblem(number, file, *unstorable))
            continue
        rows.append(ManifestRow(number, file, fields))
    return Manifest(rows, problems)


def _unstorable(fields: dict[str, str]) -> tuple[str, str] | None:
    """(reason, detail) when a field cannot be kept as it is: longer than its column, or holding NUL
    (no PostgreSQL string may); None when the row can be recorded."""
    for name, value in fields.items():
        width = FIELD_WIDTHS.get(name)
        if "\x00" in value or (width is not None and len(value) > width):
            reason = "invalid_manifest_row" if name == "file" else "invalid_metadata"
            return reason, f"{name} holds a NUL character" if "\x00" in value else f"{name} is longer than {width} characters"
    return problem_of(fields)
