"""The care history: a patient's reimbursed care of the last 24 months, newest first.

The window is applied when reading, so a line older than the window is never returned even if
the retention job has not deleted it yet. Dates are calendar dates in Europe/Paris. The window
starts on the same calendar day 24 months before today, inclusive; when that day does not exist
(today is 29 February) it starts on 28 February.

What a line says of the care (act code and label, the professional and their profession) is sealed
under the patient's record key (pipeline/core/sealedfields.py), and the line's content hash is keyed by
it: a dump of the index shows dates and amounts, not what was done nor by whom, and destroying the
record shreds its care history too.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.orm import Session

from pipeline.core.clock import paris_date
from pipeline.core.sealedfields import CareDetails, LineSealer, SealedFieldError
from pipeline.index.models import CareEvent
from pipeline.index.recordkeys import RecordKeys

log = logging.getLogger(__name__)
WINDOW_MONTHS = 24


def window_start(as_of: dt.date) -> dt.date:
    """The first care date inside the window that ends on `as_of`."""
    months = as_of.year * 12 + (as_of.month - 1) - WINDOW_MONTHS
    year, month = divmod(months, 12)
    month += 1
    for day in (as_of.day, 30, 29, 28):  # clamp to the month's last day
        try:
            return dt.date(year, month, min(as_of.day, day))
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class CareItem:
    line_id: str
    care_date: dt.date
    act_code: str
    act_label: str
    professional_id: str
    professional_name: str
    profession: str
    amount_billed: Decimal
    amount_reimbursed: Decimal
    reimbursement_date: dt.date


@dataclass(frozen=True)
class CarePage:
    items: list[CareItem]
    total: int
    page: int
    page_size: int
    window_start: dt.date
    as_of: dt.date


def _visible(patient_id: str, as_of: dt.date) -> tuple[ColumnElement[bool], ...]:
    return (
        CareEvent.patient_id == patient_id,
        CareEvent.care_date >= window_start(as_of),
        CareEvent.care_date <= as_of,
        CareEvent.superseded_by.is_(None),  # a corrected line shows through its correction only
    )


def care_history(
    session: Session, patient_id: str, as_of: dt.date | None = None, page: int = 1, page_size: int = 50, *, record_keys: RecordKeys
) -> CarePage:
    """One page of the patient's care history inside the 24-month window ending `as_of` (today in Paris),
    its details opened with the record key (one per page, cached per process)."""
    as_of = as_of or paris_date()
    page, page_size = max(1, page), max(1, min(page_size, 500))
    where = _visible(patient_id, as_of)
    total = session.scalar(select(func.count()).select_from(CareEvent).where(*where)) or 0
    rows = session.scalars(
        select(CareEvent)
        .where(*where)
        .order_by(CareEvent.care_date.desc(), CareEvent.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return CarePage(_items(session, patient_id, rows, record_keys), total, page, page_size, window_start(as_of), as_of)


def care_history_after(
    session: Session,
    patient_id: str,
    after: tuple[dt.date, int] | None,
    limit: int = 500,
    as_of: dt.date | None = None,
    *,
    record_keys: RecordKeys,
) -> list[CareItem]:
    """Up to `limit` lines of the care history (as `care_history` shows them, newest first) that come after
    `after`, the (care date, row id) of the last line of the previous page, or from the first when None:
    keyset paging, each page an index range scan however deep it is. See `iter_care_history`."""
    rows = _rows_after(session, patient_id, after, max(1, limit), as_of or paris_date())
    return _items(session, patient_id, rows, record_keys)


def iter_care_history(
    session: Session, patient_id: str, as_of: dt.date | None = None, page_size: int = 500, *, record_keys: RecordKeys
) -> Iterator[CareItem]:
    """Every line of the care history inside the window (as `care_history` shows them, newest first), read
    `page_size` at a time by keyset: for an export, whatever its length."""
    as_of = as_of or paris_date()
    after: tuple[dt.date, int] | None = None
    while True:
        rows = _rows_after(session, patient_id, after, page_size, as_of)
        yield from _items(session, patient_id, rows, record_keys)
        if len(rows) < page_size:
            return
        after = (rows[-1].care_date, rows[-1].id)


def _rows_after(session: Session, patient_id: str, after: tuple[dt.date, int] | None, limit: int, as_of: dt.date) -> Sequence[CareEvent]:
    where = _visible(patient_id, as_of)
    if after is not None:  # the order is (care date, id) descending: what comes after is below the last pair
        where += (tuple_(CareEvent.care_date, CareEvent.id) < tuple_(*after),)
    return session.scalars(select(CareEvent).where(*where).order_by(CareEvent.care_date.desc(), CareEvent.id.desc()).limit(limit)).all()


def _items(session: Session, patient_id: str, rows: Sequence[CareEvent], record_keys: RecordKeys) -> list[CareItem]:
    """The lines as shown, their details opened with the record key (one per page, cached per process)."""
    record = record_keys.find(session, patient_id) if rows else None
    sealer = LineSealer(record.key) if record else None
    return [
        CareItem(r.line_id, r.care_date, *_details(sealer, r), r.amount_billed, r.amount_reimbursed, r.reimbursement_date) for r in rows
    ]


def _details(sealer: LineSealer | None, row: CareEvent) -> CareDetails:
    if sealer is not None and row.details_sealed is not None:
        try:
            return sealer.open(row.source, row.line_id, row.patient_id, row.details_sealed)
        except SealedFieldError:
            log.error("care line %s of %s does not open under its record key", row.line_id, row.source)
    return "", "", "", "", ""  # its record key is gone: nothing left to show
