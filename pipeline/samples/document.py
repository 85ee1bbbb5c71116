"""A document's content as the texts build it and the renderers write it: a list of pages, each a
list of sections (paragraphs, perhaps a table); French dates and numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from pipeline.samples.people import Author, Facility, Patient


@dataclass
class Table:
    header: tuple[str, ...]
    widths: tuple[float, ...]
    rows: list[tuple[str, ...]]


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    table: Table | None = None


@dataclass
class Doc:
    type_code: str
    title: str
    patient: Patient
    author: Author
    facility: Facility
    service_date: date
    moment: datetime
    intro: list[str]
    pages: list[list[Section]]
    heading: bool = True  # whether the first page shows the title (a letter may have none)


def fr(value: float, decimals: int) -> str:
    """A number as French writes it: 38,5."""
    return f"{value:.{decimals}f}".replace(".", ",")


def d(day: date) -> str:
    """A day as French writes it: 15/01/2026."""
    return day.strftime("%d/%m/%Y")
