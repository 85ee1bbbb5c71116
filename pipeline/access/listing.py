"""A page of a record's documents as an actor may see them, read from the index a page at a time.

The policy (`decide`, through `Decisions`) stays the one judge of what is shown; the query narrows only by
what is exact and cheap (the record, `Document.live`, current versions unless asked, the listing's filters, its
order). Documents alike in
every field the policy reads (`POLICY_FIELD_COLUMNS`) get one decision, so:

- the count of what the actor may see (`total`) comes from one grouped query: a row per group, decided once;
- when the actor may see every document the filters keep (the common case), the page is an OFFSET/LIMIT on
  the ordered index (ix_documents_patient_listing);
- otherwise narrow rows (`POLICY_COLUMNS`) are read in order, in bounded chunks (an indexed OFFSET each), and
  kept or skipped by their decision until the page is full: O(offset + page + hidden) rows, never the record.

Every document returned is decided again on the very row returned: a document masked, or deposited, between
two of these statements is never shown on the strength of another row's decision.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Executable, Integer, SQLColumnExpression, Table, bindparam, func, literal_column, null, select, union_all
from sqlalchemy.orm import Session

from pipeline.access.audit import APPENDED, ReadBeside
from pipeline.access.gate import Decisions
from pipeline.access.recordview import POLICY_COLUMNS, POLICY_FIELD_COLUMNS, PolicyFields, policy_fields
from pipeline.index import direct
from pipeline.index.models import LIVE_DOCUMENT, Document
from pipeline.index.repo import documents_by_id
from pipeline.index.states import DocumentStatus

if TYPE_CHECKING:
    from sqlalchemy import Row

    from pipeline.access.recordview import PolicyRow

_DOCUMENTS = cast(Table, Document.__table__)
# Narrow rows fetched per round trip when hidden documents are skipped in Python.
CHUNK = 500
# The listing's order: newest service date first (the dialect's own place for a missing date), then id. Its
# statements are built of the table's own columns (and LIVE_DOCUMENT, `Document.live` on them): Core statements,
# with no ORM compile step on each execution.
ORDER_COLUMNS = (_DOCUMENTS.c.service_date, _DOCUMENTS.c.id)
ORDER = (_DOCUMENTS.c.service_date.desc(), _DOCUMENTS.c.id)
# Where a group's policy fields are in a row of the listing's statement (`_grouped_and_paged`): after `part` and the
# page's columns, before the count.
_GROUP_FIELDS = slice(-1 - len(POLICY_FIELD_COLUMNS), -1)
# What a page's row always has, whatever else its reader asks for (`listing_beside`): its id and service date (the
# order), and what the policy reads (`policy_fields`, decided again on every row returned).
_PAGE_NEEDS = frozenset(column.name for column in (*ORDER_COLUMNS, *POLICY_COLUMNS))
_NULLS: list[SQLColumnExpression[Any]] = [literal_column("NULL") for _ in range(len(_DOCUMENTS.c) + len(POLICY_FIELD_COLUMNS) + 1)]


@dataclass(frozen=True)
class DocumentFilters:
    """What a listing asks for besides the record: class, type, service dates (bounds included)."""

    class_code: str | None = None
    type_code: str | None = None
    served_from: dt.date | None = None
    served_to: dt.date | None = None
    # Current versions only unless asked: a superseded version is read through its document's history.
    include_superseded: bool = False
    # Further exact conditions on the documents (FHIR search parameters, pipeline/sharing/search.py).
    more: tuple[SQLColumnExpression[bool], ...] = ()


@dataclass(frozen=True)
class VisiblePage:
    """One page of what the actor may see, in order, and how many documents they may see in all: each a row
    of every column of `documents` (or a Document, read the slow way), attributes named as the model's."""

    documents: list[PolicyRow]
    total: int


def _where(patient_id: str, filters: DocumentFilters) -> list[SQLColumnExpression[bool]]:
    columns = _DOCUMENTS.c
    where: list[SQLColumnExpression[bool]] = [columns.patient_id == patient_id, LIVE_DOCUMENT]
    if not filters.include_superseded:
        where.append(columns.status == DocumentStatus.CURRENT)
    if filters.class_code:
        where.append(columns.class_code == filters.class_code)
    if filters.type_code:
        where.append(columns.type_code == filters.type_code)
    if filters.served_from:
        where.append(columns.service_date >= filters.served_from)
    if filters.served_to:
        where.append(columns.service_date <= filters.served_to)
    where.extend(filters.more)
    return where


# Which of DocumentFilters' fields a listing sets (and whether superseded versions are in): its statements are
# built once per shape (see `_statements`).
_Shape = tuple[bool, bool, bool, bool, bool]


def _shape_and_params(patient_id: str, filters: DocumentFilters) -> tuple[_Shape, dict[str, object]]:
    values = {"class_code": filters.class_code, "type_code": filters.type_code,
              "served_from": filters.served_from, "served_to": filters.served_to}  # fmt: skip
    shape = (bool(filters.class_code), bool(filters.type_code), bool(filters.served_from), bool(filters.served_to),
             filters.include_superseded)  # fmt: skip
    return shape, {"patient_id": patient_id} | {name: value for name, value in values.items() if value}


def _grouped_and_paged(
    where: Sequence[SQLColumnExpression[bool]], *, appending: bool = False, page_columns: frozenset[str] | None = None
) -> Executable:
    """The listing's page and its grouped count in one statement (one round trip): first a row per document of the
    page (`part` 0: every column of `documents`, or those named in `page_columns`, as the model names them, in the
    listing's order), then a row per group of documents alike in the policy's fields (`part` 1: those fields and the
    group's count, in the last columns, `group_*`). The page is read whether or not the count lets it be used
    (`visible_page`). `appending`: the statement also inserts the access's audit entry
    (`pipeline.access.audit.APPENDED`), and a last row (`part` 2) holds its id in the last column if it went in
    (`listing_beside`)."""
    groups = select(*POLICY_FIELD_COLUMNS, func.count()).where(*where).group_by(*POLICY_FIELD_COLUMNS).subquery("groups")
    # Plain rows of every column, not ORM objects: a page of 50 costs no identity map nor instrumented attributes.
    shown = _DOCUMENTS.c if page_columns is None else [c for c in _DOCUMENTS.c if c.name in page_columns | _PAGE_NEEDS]
    page = select(*shown).where(*where).order_by(*ORDER).offset(bindparam("offset")).limit(bindparam("limit")).subquery("page")
    # The first part has typed NULLs for the groups' columns (the union's columns and their types are the first part's);
    # the others plain NULLs, which PostgreSQL types by the first part's and SQLite leaves alone: the statement stays short
    # enough for the driver to keep its parsed form (psycopg parses a query longer than 4 KiB again on each execution).
    of_page = select(
        literal_column("0", Integer).label("part"), *page.c, *(null().cast(c.type).label(f"group_{n}") for n, c in enumerate(groups.c))
    )
    of_groups = select(literal_column("1", Integer), *_NULLS[: len(page.c)], *groups.c)
    parts = [of_page, of_groups]
    if appending:
        parts.append(select(literal_column("2", Integer), *_NULLS[: len(page.c) + len(groups.c) - 1], APPENDED.c.id))
    both = union_all(*parts)
    in_order = both.selected_columns
    return both.order_by(in_order.part, in_order.service_date.desc(), in_order.id)


def _query(patient_id: str, filters: DocumentFilters) -> tuple[Executable, dict[str, object]]:
    """The listing's statement (`_grouped_and_paged`) and its parameters. Conditions beyond the listing's own filters
    (`filters.more`: FHIR search parameters) make a statement for this request only."""
    if filters.more:
        return _grouped_and_paged(_where(patient_id, filters)), {}
    shape, params = _shape_and_params(patient_id, filters)
    return _statement(shape), params


def listing_beside(
    patient_id: str, filters: DocumentFilters, *, page: int, page_size: int, columns: frozenset[str] | None = None
) -> ReadBeside | None:
    """The listing's statement made by the one that appends a patient's own access's entry (`pipeline.access.gate.check`
    with `beside`): the insert, the page and its count in one round trip, its rows then given to `visible_page`. None for
    a listing with conditions of its own (`filters.more`). `columns`: the only columns of `documents` its reader reads of
    a page's rows (besides `_PAGE_NEEDS`): fewer values sent, decoded and converted. (When this way is not open the
    reader gets rows of every column from `visible_page`.)"""
    if filters.more:
        return None
    shape, params = _shape_and_params(patient_id, filters)
    return ReadBeside(_statement(shape, appending=True, page_columns=columns), params | _page_params(page, page_size), _appended_id)


def _appended_id(rows: Sequence[Row[Any]]) -> int | None:
    """The audit entry's id in a row of `part` 2, the last in order (`_grouped_and_paged` with `appending`)."""
    return cast(int, rows[-1][-1]) if rows and rows[-1].part == 2 else None


def _page_params(page: int, page_size: int) -> dict[str, int]:
    return {"offset": (page - 1) * page_size, "limit": page_size}


@functools.cache
def _statement(shape: _Shape, appending: bool = False, page_columns: frozenset[str] | None = None) -> Executable:
    """The statement of a listing of this shape (`_grouped_and_paged`), the values bound at execution: built once, it
    costs neither its construction nor its cache key on each request."""
    columns = _DOCUMENTS.c
    where: list[SQLColumnExpression[bool]] = [columns.patient_id == bindparam("patient_id"), LIVE_DOCUMENT]
    bounds = (
        columns.class_code == bindparam("class_code"),
        columns.type_code == bindparam("type_code"),
        columns.service_date >= bindparam("served_from"),
        columns.service_date <= bindparam("served_to"),
    )
    *used, include_superseded = shape
    where += [bound for bound, wanted in zip(bounds, used, strict=True) if wanted]
    if not include_superseded:
        where.append(columns.status == DocumentStatus.CURRENT)
    return _grouped_and_paged(where, appending=appending, page_columns=page_columns)


def policy_groups(session: Session, where: Sequence[SQLColumnExpression[bool]]) -> list[tuple[PolicyFields, int]]:
    """The documents `where` keeps, counted per group alike in every field the policy reads: one round trip,
    a row per group, each group decided once by the caller (`Decisions.allows`). `where` must name the record
    and `Document.live`: this narrows by nothing itself."""
    grouped = session.execute(select(*POLICY_FIELD_COLUMNS, func.count()).where(*where).group_by(*POLICY_FIELD_COLUMNS)).all()
    return [(tuple(row[:-1]), row[-1]) for row in grouped]


def visible_count(session: Session, decisions: Decisions, where: Sequence[SQLColumnExpression[bool]]) -> int:
    """How many of the documents `where` keeps `decisions` allows (see `policy_groups`)."""
    return sum(count for fields, count in policy_groups(session, where) if decisions.allows(fields))


def visible_page(
    session: Session,
    decisions: Decisions,
    patient_id: str,
    filters: DocumentFilters,
    *,
    page: int,
    page_size: int,
    chunk: int = CHUNK,
    read: Sequence[Row[Any]] | None = None,
) -> VisiblePage:
    """Page `page` (from 1) of the record's live documents that `decisions` allows, `page_size` a page,
    newest service date first, filtered by `filters`; and the count of all it allows. `read`: the rows of the
    listing's statement already run for these arguments (`listing_beside`)."""
    start = (page - 1) * page_size
    if read is None:
        query, params = _query(patient_id, filters)
        # Fetched whole (`all`): iterating the result would fetch the rows one call at a time.
        read = session.execute(query, params | _page_params(page, page_size)).all()
    read = _plain(read)
    documents: list[PolicyRow] = [row for row in read if row.part == 0]
    counts = [(tuple(row[_GROUP_FIELDS]), row[-1]) for row in read if row.part == 1]
    total = sum(count for fields, count in counts if decisions.allows(fields))
    hidden = sum(count for _, count in counts) - total
    if start >= total:
        return VisiblePage([], total)
    if hidden == 0:
        if all(decisions.allows(policy_fields(document)) for document in documents):
            return VisiblePage(documents, total)
        # A document changed (or came) since the count: page the slow way, every row decided, no bound.
        return VisiblePage(_skipping(session, decisions, _where(patient_id, filters), start, page_size, None, chunk), total)
    return VisiblePage(_skipping(session, decisions, _where(patient_id, filters), start, page_size, hidden, chunk), total)


def _plain(rows: Sequence[Any]) -> Any:
    """`rows` as named tuples of the same fields: a Row finds an attribute by its name on every access (through a
    failed lookup first, about ten times an index), and a page is read by name some 900 times (`policy_fields`, its
    titles, its JSON): about 0.3 ms, a sixth of the list route's CPU, where copying the rows costs a few microseconds.
    Rows read below the Session (`pipeline.index.direct`) are named tuples already."""
    if not rows or isinstance(rows[0], tuple):
        return rows
    make = direct.row_maker(rows[0]._fields)
    return [make(row) for row in rows]


def _skipping(
    session: Session,
    decisions: Decisions,
    where: list[SQLColumnExpression[bool]],
    start: int,
    page_size: int,
    hidden: int | None,
    chunk: int,
) -> list[PolicyRow]:
    """The page read from narrow rows in order, hidden ones skipped: at most `start + page_size + hidden` rows
    (the hidden ones may all come first), `chunk` at a time by an indexed OFFSET and no further than the page's
    end. Plain statements, no server-side cursor: they run in an autocommit session too (`Runtime.reads`).

    Between two chunks a deposit or a shredding may shift the rows by one: a row read twice is kept once, and
    every row kept is decided again on the document returned (see `visible_page`)."""
    bound = start + page_size + hidden if hidden is not None else None
    query = select(*POLICY_COLUMNS).where(*where).order_by(*ORDER)
    page_ids: list[str] = []
    seen: set[str] = set()
    shown = read = 0
    while len(page_ids) < page_size and (bound is None or read < bound):
        size = chunk if bound is None else min(chunk, bound - read)
        rows = session.execute(query.offset(read).limit(size)).all()
        read += len(rows)
        for row in rows:
            if row.id in seen or not decisions.allows(policy_fields(row)):
                continue
            seen.add(row.id)
            if shown >= start:
                page_ids.append(row.id)
                if len(page_ids) == page_size:
                    break
            shown += 1
        if len(rows) < size:
            break
    by_id = documents_by_id(session, page_ids)
    # Loaded whole in another statement: decided again on what is returned (masked or shredded since: left out).
    loaded = (by_id.get(document_id) for document_id in page_ids)
    return [d for d in loaded if d is not None and d.live and decisions.allows(policy_fields(d))]
