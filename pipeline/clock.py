"""Dates as the domain counts them: calendar dates in Europe/Paris."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def paris_date(moment: dt.datetime | None = None) -> dt.date:
    """The Europe/Paris calendar date at `moment` (now by default; a naive moment is UTC)."""
    moment = moment or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(PARIS).date()
