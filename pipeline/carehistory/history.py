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
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, func, select
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
    record = record_keys.find(session, patient_id) if rows else None
    sealer = LineSealer(record.key) if record else None
    items = [
        CareItem(r.line_id, r.care_date, *_details(sealer, r), r.amount_billed, r.amount_reimbursed, r.reimbursement_date) for r in rows
    ]
    return CarePage(items, total, page, page_size, window_start(as_of), as_of)


def _details(sealer: LineSealer | None, row: CareEvent) -> CareDetails:
    if sealer is not None and row.details_sealed is not None:
        try:
            return sealer.open(row.source, row.line_id, row.patient_id, row.details_sealed)
        except SealedFieldError:
            log.error("care line %s of %s does not open under its record key", row.line_id, row.source)
    return "", "", "", "", ""  # its record key is gone: nothing left to show
