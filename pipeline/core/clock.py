"""Dates as the domain counts them: calendar dates in Europe/Paris."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def as_utc(moment: dt.datetime) -> dt.datetime:
    """`moment` in UTC (a naive moment is UTC: SQLite returns stored UTC times without their zone)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def paris_date(moment: dt.datetime | None = None) -> dt.date:
    """The Europe/Paris calendar date at `moment` (now by default; a naive moment is UTC)."""
    return as_utc(moment or dt.datetime.now(dt.UTC)).astimezone(PARIS).date()
