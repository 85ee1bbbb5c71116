"""The insurer's reimbursement feed: CSV (UTF-8, header row) or NDJSON with the same fields.

Reading is streamed: the intake cuts the file into chunks of lines (kept as inbox objects), and
each chunk is parsed and checked line by line by a worker. A bad line becomes a rejection with
its line number and reason; the other lines go on.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import islice
from typing import BinaryIO, NamedTuple

from pipeline.core.identity import is_valid_nir, normalize_nir
from pipeline.index.base import text_widths
from pipeline.index.models import CareEvent, FeedRejection
from pipeline.index.states import FeedFormat

FIELDS = (
    "line_id",
    "patient_ins",
    "care_date",
    "act_code",
    "act_label",
    "professional_id",
    "professional_name",
    "profession",
    "amount_billed",
    "amount_reimbursed",
    "reimbursement_date",
)
OPTIONAL_FIELDS = ("supersedes",)
ALL_FIELDS = FIELDS + OPTIONAL_FIELDS

LINE_REASONS: dict[str, str] = {
    "malformed_line": "The line cannot be read (bad JSON, or a CSV row with the wrong number of fields).",
    "unknown_columns": "The line has fields the feed format does not define.",
    "missing_field": "A required field is empty.",
    "invalid_ins": "The patient INS (NIR) is malformed or its control key is wrong.",
    "invalid_date": "A date is not an ISO date (YYYY-MM-DD).",
    "future_care_date": "The care date is after today (Europe/Paris).",
    "invalid_amount": "An amount is not a non-negative number with at most 2 decimals.",
    "duplicate_line": "This line_id was already received with different content; send a correction (supersedes).",
    "record_closed": "The patient's record is closed or was opposed.",
    "invalid_encoding": "The line is not UTF-8 text (an export in Latin-1 or Windows-1252?): re-export the feed as UTF-8.",
    "field_too_long": "A field is longer than allowed.",
}
# The most characters of each field. For a field kept in a care_events column, that column's width: PostgreSQL
# refuses a longer value, and with it the whole chunk's bulk write (thousands of good lines), so it is checked
# here. The details sealed under the record key keep the bounds their columns had: an act code is a code.
SEALED_FIELD_WIDTHS: dict[str, int] = {"act_code": 32, "professional_id": 64, "profession": 64}
FIELD_WIDTHS: dict[str, int] = {
    **text_widths(CareEvent, ALL_FIELDS),
    **SEALED_FIELD_WIDTHS,
}
LINE_ID_WIDTH = text_widths(FeedRejection, ["line_id"])["line_id"]


# A CSV record (a row whose quoted field spans lines) may not run over more lines than this.
MAX_RECORD_LINES = 100


class FeedError(Exception):
    """The feed as a whole is unusable (not UTF-8, unknown format, bad CSV header)."""


@dataclass(frozen=True)
class LineRejection:
    line_number: int
    line_id: str | None
    reason: str
    detail: str = ""

    @property
    def message(self) -> str:
        return f"{LINE_REASONS[self.reason]} {self.detail}".strip()


class CareLine(NamedTuple):
    """A checked line. A NamedTuple, not a frozen dataclass: a million of these are built per feed."""

    line_number: int
    line_id: str
    ins: str
    care_date: dt.date
    act_code: str
    act_label: str
    professional_id: str
    professional_name: str
    profession: str
    amount_billed: Decimal
    amount_reimbursed: Decimal
    reimbursement_date: dt.date
    supersedes: str | None
    content_hash: str


def feed_format(name: str, head: bytes) -> FeedFormat:
    """csv or ndjson, from the file name, else from the first byte."""
    lower = name.lower()
    if lower.endswith((".ndjson", ".jsonl", ".json")):
        return FeedFormat.NDJSON
    if lower.endswith(".csv"):
        return FeedFormat.CSV
    return FeedFormat.NDJSON if head.lstrip()[:1] == b"{" else FeedFormat.CSV


def _amount(text: str) -> Decimal:
    value = Decimal(text.strip().replace(",", "."))
    exponent = value.as_tuple().exponent  # a letter for NaN and infinities
    if not isinstance(exponent, int) or value < 0 or exponent < -2 or value >= Decimal("1e10"):
        raise InvalidOperation
    return value


def _shown(name: str) -> str:
    """A field name from the feed as a message may quote it: printable, and short."""
    return "".join(c if c.isprintable() else "?" for c in name[:64])


def check_line(number: int, raw: dict[str, object], today: dt.date) -> CareLine | LineRejection:
    """One feed line, parsed and checked on its own."""
    line_id = str(raw.get("line_id") or "").strip() or None
    if line_id is not None and ("\x00" in line_id or len(line_id) > LINE_ID_WIDTH):
        line_id = None  # the rejection is kept under its line number only
    unknown = sorted(set(raw) - set(ALL_FIELDS))
    if unknown:
        return LineRejection(number, line_id, "unknown_columns", ", ".join(_shown(name) for name in unknown[:5]))
    values = {name: str(raw.get(name) if raw.get(name) is not None else "").strip() for name in ALL_FIELDS}
    nul = [name for name, value in values.items() if "\x00" in value]
    if nul:  # no PostgreSQL string may hold one: not text
        return LineRejection(number, line_id, "malformed_line", f"NUL character in {', '.join(nul)}")
    missing = [name for name in FIELDS if not values[name]]
    if missing:
        return LineRejection(number, line_id, "missing_field", ", ".join(missing))
    too_long = [f"{name} (at most {width})" for name, width in FIELD_WIDTHS.items() if len(values[name]) > width]
    if too_long:
        return LineRejection(number, line_id, "field_too_long", ", ".join(too_long))
    ins = normalize_nir(values["patient_ins"])
    if not is_valid_nir(ins):
        return LineRejection(number, line_id, "invalid_ins")
    try:
        care_date = dt.date.fromisoformat(values["care_date"])
        reimbursement_date = dt.date.fromisoformat(values["reimbursement_date"])
    except ValueError:
        return LineRejection(number, line_id, "invalid_date")
    if care_date > today:
        return LineRejection(number, line_id, "future_care_date")
    try:
        billed, reimbursed = _amount(values["amount_billed"]), _amount(values["amount_reimbursed"])
    except (InvalidOperation, ValueError):
        return LineRejection(number, line_id, "invalid_amount")
    canonical = "\x1f".join([ins, care_date.isoformat(), *(values[n] for n in ("act_code", "act_label", "professional_id",
                            "professional_name", "profession")), str(billed), str(reimbursed), reimbursement_date.isoformat(),
                            values["supersedes"]])  # fmt: skip
    return CareLine(
        line_number=number,
        line_id=values["line_id"],
        ins=ins,
        care_date=care_date,
        act_code=values["act_code"],
        act_label=values["act_label"],
        professional_id=values["professional_id"],
        professional_name=values["professional_name"],
        profession=values["profession"],
        amount_billed=billed,
        amount_reimbursed=reimbursed,
        reimbursement_date=reimbursement_date,
        supersedes=values["supersedes"] or None,
        content_hash=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def csv_header(first_line: bytes) -> list[str]:
    """The CSV header's fields; unknown or missing required columns make the feed unusable."""
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedError("the feed is not UTF-8: re-export it as UTF-8") from None
    header = [name.strip() for name in next(csv.reader([text]), [])]
    missing = [name for name in FIELDS if name not in header]
    unknown = [name for name in header if name not in ALL_FIELDS]
    if missing or unknown:
        raise FeedError(f"bad CSV header: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    return header


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_chunk(data: bytes, fmt: FeedFormat, header: list[str] | None, first_line: int) -> Iterator[tuple[int, dict[str, object] | str]]:
    """Yield (line number, fields) per line of a chunk; for a line that cannot be read, its reason
    instead of fields: `malformed_line`, or `invalid_encoding` for bytes that are not UTF-8 (never
    replaced: a garbled name or label stored as if it were right is data lost)."""
    if fmt == FeedFormat.NDJSON:
        for offset, line in enumerate(data.splitlines()):
            if not line.strip():
                continue
            text = _utf8(line)
            if text is None:
                yield first_line + offset, "invalid_encoding"
                continue
            try:
                raw = json.loads(text)
            except ValueError:
                yield first_line + offset, "malformed_line"
                continue
            yield first_line + offset, raw if isinstance(raw, dict) else "malformed_line"
        return
    assert header is not None
    for number, row in _csv_rows(data, first_line):
        if isinstance(row, list) and (not row or row == [""]):
            continue
        if isinstance(row, str) or len(row) != len(header):
            yield number, row if isinstance(row, str) else "malformed_line"
            continue
        yield number, dict(zip(header, row, strict=True))


def _csv_rows(data: bytes, first_line: int) -> Iterator[tuple[int, list[str] | str]]:
    """(line number, fields) per CSV record of a chunk, or the reason a record cannot be read.

    A chunk of UTF-8 without a quote has one record per line and one reader does it all; otherwise
    each record (see `records`) is decoded and parsed on its own, so that a stray quote or a line
    in another encoding spoils its own record only, instead of the lines after it."""
    text = _utf8(data)
    if text is not None and b'"' not in data:
        yield from ((first_line + offset, row) for offset, row in enumerate(csv.reader(io.StringIO(text, newline=""))))
        return
    for offset, record in records(io.BytesIO(data).readlines(), quoted=True):
        record_text = _utf8(b"".join(record))
        if record_text is None:
            yield first_line + offset, "invalid_encoding"
            continue
        try:
            rows = list(csv.reader(io.StringIO(record_text, newline="")))
        except csv.Error:
            rows = []
        yield first_line + offset, rows[0] if len(rows) == 1 else ("malformed_line" if rows else [])


def iter_lines(handle: BinaryIO, block: int = 1024 * 1024, watch: Callable[[bytes], object] | None = None) -> Iterator[bytes]:
    """The lines of a byte stream, each with its b"\\n" (the last may lack it), from any `.read()`:
    a local file, or an S3 body, whose own iteration yields fixed-size pieces, not lines. `watch` is
    given every byte read, block by block (the feed's keyed hash, taken in the same read)."""
    if watch is None and isinstance(handle, io.BufferedReader | io.BytesIO):
        yield from handle  # a real file: its own (C) line iteration
        return
    pending = b""
    while chunk := handle.read(block):
        if watch is not None:
            watch(chunk)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from [line + b"\n" for line in lines]
    if pending:
        yield pending


def records(lines: Iterable[bytes], quoted: bool) -> Iterator[tuple[int, list[bytes]]]:
    """Group physical lines into records: (offset of the record's first line, its lines).

    NDJSON (`quoted` False): one line, one record. CSV: a record goes on while a quoted field is
    open (a line with an odd number of `"` opens or closes one; an escaped quote is `""`), so a
    label quoted across lines stays one record. A quote left open for MAX_RECORD_LINES lines is
    taken for a stray one: its lines become records of their own (each rejected or read alone),
    so a broken line never swallows the rest of the feed, nor holds it in memory.
    """
    grouper = _Records(quoted)
    for line in lines:
        yield from grouper.add(line)
    yield from grouper.end()


class _Records:
    """`records`, one line at a time: the intake's planner gives it the lines of the blocks that hold a quote only."""

    def __init__(self, quoted: bool) -> None:
        self.quoted = quoted
        self.offset = 0  # of the next line
        self.pending: list[bytes] = []
        self.start = 0
        self.inside = False

    def add(self, line: bytes) -> list[tuple[int, list[bytes]]]:
        if not self.pending:
            self.start = self.offset
        self.offset += 1
        self.pending.append(line)
        if self.quoted and line.count(b'"') % 2:
            self.inside = not self.inside
        if self.inside and len(self.pending) < MAX_RECORD_LINES:
            return []
        return self.end()

    def end(self) -> list[tuple[int, list[bytes]]]:
        """The lines held: one record, or each its own if its quote never closed."""
        held, self.pending = self.pending, []
        if not held:
            return []
        done = [(self.start + n, [line]) for n, line in enumerate(held)] if self.inside else [(self.start, held)]
        self.inside = False
        return done


def _grouped(source: Iterable[bytes], chunk_records: int, quoted: bool) -> Iterator[tuple[int, list[bytes], int]]:
    """A feed's whole records (see `records`) grouped `chunk_records` at a time: (first line number, their
    lines, record count). Line numbers count physical lines from 1."""
    lines: list[bytes] = []
    first, count = 1, 0
    for offset, record in records(source, quoted):
        if not count:
            first = offset + 1
        lines.extend(record)
        count += 1
        if count >= chunk_records:
            yield first, lines, count
            lines, count = [], 0
    if count:
        yield first, lines, count


def split_lines(source: Iterable[bytes], chunk_records: int, quoted: bool = False) -> Iterator[tuple[int, bytes, int]]:
    """Cut a feed's lines into chunks of whole records: (first line number, bytes, record count)."""
    for first, lines, count in _grouped(source, chunk_records, quoted):
        yield first, b"".join(lines), count


def blocks_of_lines(handle: BinaryIO, block: int = 1024 * 1024, watch: Callable[[bytes], object] | None = None) -> Iterator[bytes]:
    """A byte stream in blocks of whole lines (each ends with b"\\n", but the last may not), from any `.read()`. `watch`
    is given every byte read, block by block (the feed's keyed hash, taken in the same read)."""
    pending = b""
    while chunk := handle.read(block):
        if watch is not None:
            watch(chunk)
        data = pending + chunk
        end = data.rfind(b"\n") + 1
        if end:
            yield data[:end]
        pending = data[end:]
    if pending:
        yield pending


_LINE_END = re.compile(b"\n")


def plan_chunks(blocks: Iterable[bytes], chunk_records: int, quoted: bool = False) -> Iterator[tuple[int, int, int]]:
    """`split_lines` without the bytes, from blocks of whole lines (`blocks_of_lines`): (first line number, byte
    length, record count) per chunk, so that a chunk is read later as a byte range, without cutting lines again.

    A block without a quote (and no quoted record open) is one record per line, counted and cut in C; only a block
    that holds a quote goes line by line through `records` (a million lines: 0.7 s of CPU line by line, before the
    intake could send its first chunk)."""
    grouper = _Records(quoted)
    first = size = count = 0

    def add(start: int, records: int, length: int) -> Iterator[tuple[int, int, int]]:
        nonlocal first, size, count
        if not count:
            first = start + 1
        size, count = size + length, count + records
        if count >= chunk_records:
            yield first, size, count
            size = count = 0

    for block in blocks:
        if not block:
            continue
        if grouper.pending or (quoted and b'"' in block):
            for line in io.BytesIO(block).readlines():
                for start, record in grouper.add(line):
                    yield from add(start, 1, sum(map(len, record)))
            continue
        lines = block.count(b"\n") + (not block.endswith(b"\n"))
        position = 0
        while lines:
            take = min(lines, chunk_records - count)
            end = len(block) if take == lines else next(islice(_LINE_END.finditer(block, position), take - 1, None)).end()
            yield from add(grouper.offset, take, end - position)
            grouper.offset += take
            lines, position = lines - take, end
    for start, record in grouper.end():
        yield from add(start, 1, sum(map(len, record)))
    if count:
        yield first, size, count
