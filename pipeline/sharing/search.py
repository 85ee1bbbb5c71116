"""FHIR search parameters (ITI-66, ITI-67) turned into the listing's filters, and the lookups they need.

The policy is not here: the callers page through `pipeline.access.listing.visible_page`, which asks it per
document. This module only says which of a record's documents a search names (exact SQL conditions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, literal, select
from sqlalchemy.orm import Session

from pipeline.access.listing import DocumentFilters
from pipeline.core.identity import INS_OIDS, normalize_nir
from pipeline.index.models import BatchItem, Document, DocumentSharing, Patient, SubmissionSet
from pipeline.index.states import DocumentStatus

MAX_COUNT = 200
MAX_INS = 15
DEFAULT_COUNT = 20  # as common FHIR servers; a page is built and serialized by the model library, which costs
# FHIR date prefixes the date parameters accept; a bare date means `eq`.
PREFIXES = ("eq", "ge", "le", "gt", "lt")


class SearchError(Exception):
    """A search parameter that cannot be read: 400 with `code` (stable) and a message naming the parameter."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Paging:
    count: int
    offset: int

    @property
    def page(self) -> int:
        return self.offset // self.count + 1


def ins_of(token: str | None) -> str | None:
    """The INS a `patient.identifier` token names (`urn:oid:<INS OID>|<NIR>`); None when it names none."""
    system, bar, value = (token or "").partition("|")
    if not bar or system.removeprefix("urn:oid:") not in INS_OIDS or not system.startswith("urn:oid:"):
        raise SearchError("patient_identifier_invalid", "patient.identifier must be urn:oid:<INS OID>|<INS>.")
    # Matched as the index keeps it (every stored INS passed its key check at intake); a value no INS can be names none.
    ins = normalize_nir(value)
    return ins if 0 < len(ins) <= MAX_INS else None


def patient_id_of(session: Session, ins: str | None) -> str | None:
    return session.scalars(select(Patient.id).where(Patient.ins == ins)).first() if ins else None


def owner_of(session: Session, document_id: str) -> tuple[str, str] | None:
    """The patient id and INS of the record holding `document_id` (None: no such document). For the gate only:
    what the caller learns is the gate's answer."""
    row = session.execute(
        select(Patient.id, Patient.ins).join(Document, Document.patient_id == Patient.id).where(Document.id == document_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def paging(params: Mapping[str, str]) -> Paging:
    try:
        count = int(params.get("_count") or DEFAULT_COUNT)
        offset = int(params.get("_offset") or 0)
    except ValueError:
        raise SearchError("invalid_request", "_count and _offset are integers.") from None
    if not 1 <= count <= MAX_COUNT or offset < 0:
        raise SearchError("invalid_request", f"_count is from 1 to {MAX_COUNT}, _offset from 0.")
    # The listing pages by page number: an offset is rounded down to its page's start.
    return Paging(count, offset - offset % count)


def _code(token: str) -> str:
    """A token's code (`system|code` or `code`)."""
    return token.rpartition("|")[2]


def _dates(values: Sequence[str], name: str) -> list[tuple[str, dt.date]]:
    bounds = []
    for value in values:
        prefix = value[:2] if value[:2] in PREFIXES else "eq"
        try:
            day = dt.date.fromisoformat(value.removeprefix(prefix)[:10])
        except ValueError:
            raise SearchError("invalid_request", f"{name} takes a date (YYYY-MM-DD), optionally prefixed eq, ge, le, gt, lt.") from None
        bounds.append((prefix, day))
    return bounds


def _date_bounds(values: Sequence[str], name: str) -> tuple[dt.date | None, dt.date | None]:
    low: dt.date | None = None
    high: dt.date | None = None
    for prefix, day in _dates(values, name):
        if prefix in ("eq", "ge", "gt"):
            start = day + dt.timedelta(days=1) if prefix == "gt" else day
            low = max(low, start) if low else start
        if prefix in ("eq", "le", "lt"):
            end = day - dt.timedelta(days=1) if prefix == "lt" else day
            high = min(high, end) if high else end
    return low, high


def _sharing(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return Document.id.in_(select(DocumentSharing.document_id).where(condition))


def document_filters(params: Mapping[str, Sequence[str]]) -> DocumentFilters | None:
    """The listing filters an ITI-67 search asks for; None when it can match nothing (a status no document has)."""

    def one(name: str) -> str | None:
        values = params.get(name) or []
        return values[-1] if values else None

    statuses = {_code(v) for value in params.get("status", []) for v in value.split(",")}
    shown = status_filter(statuses) if statuses else {DocumentStatus.CURRENT}
    if not shown:
        return None
    more: list[ColumnElement[bool]] = []
    if shown != {DocumentStatus.CURRENT}:
        more.append(Document.status.in_(sorted(shown)))
    category, type_code = one("category"), one("type")
    for name, column in (("facility", DocumentSharing.facility_type), ("setting", DocumentSharing.practice_setting),
                         ("security-label", DocumentSharing.confidentiality), ("format", DocumentSharing.format_code),
                         ("author.family", DocumentSharing.author_family), ("author.given", DocumentSharing.author_given)):  # fmt: skip
        value = one(name)
        if value:
            more.append(_sharing(column == (_code(value) if "." not in name else value)))
    author = one("author.identifier")
    if author:
        more.append(Document.author_id == _code(author))
    for value in params.get("event", []):
        padded = literal(" ") + DocumentSharing.event_codes + literal(" ")  # codes are space-separated: match whole ones
        more.append(_sharing(padded.contains(f" {_code(value)} ", autoescape=True)))
    created_from, created_to = _date_bounds(params.get("date", []), "date")
    if created_from:
        more.append(Document.created_at >= dt.datetime.combine(created_from, dt.time(), dt.UTC))
    if created_to:
        more.append(Document.created_at < dt.datetime.combine(created_to + dt.timedelta(days=1), dt.time(), dt.UTC))
    served_from, served_to = _date_bounds(params.get("period", []), "period")
    return DocumentFilters(
        class_code=_code(category) if category else None,
        type_code=_code(type_code) if type_code else None,
        served_from=served_from,
        served_to=served_to,
        include_superseded=shown != {DocumentStatus.CURRENT},
        more=tuple(more),
    )


def status_filter(statuses: set[str]) -> set[DocumentStatus]:
    """The statuses a search for `statuses` can find, as /v1's listing: `current` and `superseded` (a replaced or
    deprecated version, still readable). Never `entered-in-error`: a withdrawn document is crypto-shredded, out of
    the record (`Document.live`), and shown nowhere, not even as metadata; a search for it alone finds nothing."""
    return {DocumentStatus(s) for s in statuses if s in (DocumentStatus.CURRENT, DocumentStatus.SUPERSEDED)}


@dataclass(frozen=True)
class SubmissionRow:
    id: str
    unique_id: str
    source: str
    created_at: dt.datetime
    batch_id: str


def list_owner_of(session: Session, list_id: str) -> tuple[str, str] | None:
    """The patient id and INS of the record a SubmissionSet brought documents to (None: no such List, or one that
    brought none). For the gate only, as `owner_of`."""
    row = session.execute(
        select(Patient.id, Patient.ins)
        .join(Document, Document.patient_id == Patient.id)
        .join(BatchItem, BatchItem.id == Document.batch_item_id)
        .join(SubmissionSet, SubmissionSet.batch_id == BatchItem.batch_id)
        .where(SubmissionSet.id == list_id)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


def submission_sets_of(session: Session, patient_id: str, list_id: str | None = None) -> list[tuple[SubmissionRow, list[str]]]:
    """The SubmissionSets that brought live documents to this record (or the one `list_id` names), newest first,
    with those documents' ids."""
    query = (
        select(SubmissionSet.id, SubmissionSet.unique_id, SubmissionSet.source, SubmissionSet.created_at, SubmissionSet.batch_id)
        .add_columns(Document.id)
        .join(BatchItem, BatchItem.batch_id == SubmissionSet.batch_id)
        .join(Document, Document.batch_item_id == BatchItem.id)
        .where(Document.patient_id == patient_id, Document.live)
        .order_by(SubmissionSet.created_at.desc(), SubmissionSet.id, BatchItem.row_number)
    )
    rows = session.execute(query if list_id is None else query.where(SubmissionSet.id == list_id)).all()
    sets: dict[str, tuple[SubmissionRow, list[str]]] = {}
    for row in rows:
        entry = sets.setdefault(row[0], (SubmissionRow(*row[:5]), []))
        entry[1].append(row[5])
    return list(sets.values())


def documents_by_id(session: Session, document_ids: Sequence[str]) -> dict[str, Document]:
    if not document_ids:
        return {}
    return {row.id: row for row in session.scalars(select(Document).where(Document.id.in_(document_ids)))}


def sharing_of(session: Session, document_ids: Sequence[str]) -> dict[str, DocumentSharing]:
    if not document_ids:
        return {}
    return {row.document_id: row for row in session.scalars(select(DocumentSharing).where(DocumentSharing.document_id.in_(document_ids)))}
