"""Processing one feed chunk: check each line, write the good ones in bulk, record the rest.

One transaction per chunk: the lines, their rejections, the corrections they make, the
patients' notifications and the chunk's state commit together, so a retry after a crash starts
from a clean slate, and re-sending lines that are already stored changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from pipeline.clock import paris_date
from pipeline.index.models import CareEvent, Feed, FeedChunk, FeedRejection, Outbox, Patient, new_id
from pipeline.index.repo import insert_ignore
from pipeline.ingest.feed import CareLine, LineRejection, check_line, parse_chunk
from pipeline.runtime import Runtime
from pipeline.storage import ObjectNotFound

log = logging.getLogger(__name__)
COLUMNS = (
    "source", "line_id", "patient_id", "care_date", "act_code", "act_label", "professional_id", "professional_name",
    "profession", "amount_billed", "amount_reimbursed", "reimbursement_date", "supersedes", "content_hash", "feed_id",
)  # fmt: skip


def _claim(session: Session, chunk_id: str) -> FeedChunk | None:
    chunk = session.get(FeedChunk, chunk_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if chunk is None or chunk.state == "done":
        session.rollback()
        return None
    chunk.state, chunk.attempts = "processing", chunk.attempts + 1
    session.commit()
    return chunk


def check_chunk(data: bytes, feed: Feed, chunk: FeedChunk, today: dt.date) -> tuple[list[CareLine], list[LineRejection]]:
    """Parse and check every line of a chunk on its own (no database)."""
    header = feed.header.split(",") if feed.header else None
    lines: list[CareLine] = []
    rejections: list[LineRejection] = []
    for number, raw in parse_chunk(data, feed.format, header, chunk.first_line):
        checked = LineRejection(number, None, "malformed_line") if raw is None else check_line(number, raw, today)
        (lines if isinstance(checked, CareLine) else rejections).append(checked)  # type: ignore[arg-type]
    return lines, rejections


def _patients(session: Session, ins_values: set[str]) -> dict[str, Patient]:
    for ins in sorted(ins_values):
        insert_ignore(session, Patient, {"id": new_id(), "ins": ins, "status": "open"})
    return {p.ins: p for p in session.scalars(select(Patient).where(Patient.ins.in_(ins_values)))}


def _dedupe(session: Session, source: str, lines: list[CareLine]) -> tuple[list[CareLine], list[LineRejection]]:
    """Drop lines already stored with the same content; reject those stored with other content."""
    known = dict(
        session.execute(
            select(CareEvent.line_id, CareEvent.content_hash).where(
                CareEvent.source == source, CareEvent.line_id.in_({x.line_id for x in lines})
            )
        ).all()
    )
    fresh: list[CareLine] = []
    rejected: list[LineRejection] = []
    for line in lines:
        seen = known.get(line.line_id)
        if seen is None:
            known[line.line_id] = line.content_hash
            fresh.append(line)
        elif seen != line.content_hash:
            rejected.append(LineRejection(line.line_number, line.line_id, "duplicate_line"))
    return fresh, rejected


def _write(session: Session, rows: list[tuple]) -> None:
    """Bulk write: PostgreSQL COPY inside the chunk's transaction, multi-row INSERT elsewhere."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor.copy(f"COPY care_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    session.execute(insert(CareEvent), [dict(zip(COLUMNS, row, strict=True)) for row in rows])


def _link_corrections(session: Session, source: str, lines: Sequence[CareLine]) -> None:
    """A correction supersedes the line it names, whichever of the two arrived first."""
    for line in lines:
        if line.supersedes:
            session.execute(
                update(CareEvent).where(CareEvent.source == source, CareEvent.line_id == line.supersedes).values(superseded_by=line.line_id)
            )
    new_ids = [line.line_id for line in lines]
    earlier = session.execute(
        select(CareEvent.supersedes, CareEvent.line_id).where(CareEvent.source == source, CareEvent.supersedes.in_(new_ids))
    ).all()
    for target, correction in earlier:
        session.execute(update(CareEvent).where(CareEvent.source == source, CareEvent.line_id == target).values(superseded_by=correction))


def process_chunk(rt: Runtime, chunk_id: str, today: dt.date | None = None) -> str:
    """Run one attempt on a feed chunk; idempotent."""
    with rt.sessions() as session:
        chunk = _claim(session, chunk_id)
    if chunk is None:
        _forget(rt, chunk_id)
        return "done"
    with rt.sessions() as session:
        feed = session.get(Feed, chunk.feed_id)
    try:
        with rt.store.open(chunk.inbox_key or "") as handle:
            data = handle.read()
    except ObjectNotFound:
        log.warning("feed chunk %s has no inbox object; re-send the feed to resume it", chunk.id)
        return "queued"
    lines, rejections = check_chunk(data, feed, chunk, today or paris_date())
    with rt.sessions() as session:
        patients = _patients(session, {line.ins for line in lines})
        open_lines = [line for line in lines if patients[line.ins].status == "open"]
        rejections += [LineRejection(x.line_number, x.line_id, "record_closed") for x in lines if patients[x.ins].status != "open"]
        fresh, duplicates = _dedupe(session, feed.source, open_lines)
        rejections += duplicates
        _write(session, [_row(feed, patients[line.ins].id, line) for line in fresh])
        _link_corrections(session, feed.source, fresh)
        for rejection in rejections:
            values = {"line_number": rejection.line_number, "line_id": rejection.line_id, "reason": rejection.reason}
            insert_ignore(session, FeedRejection, {"id": new_id(), "feed_id": feed.id, "message": rejection.message, **values})
        for patient_id in {patients[line.ins].id for line in fresh}:
            insert_ignore(
                session,
                Outbox,
                {"id": new_id(), "patient_id": patient_id, "kind": "reimbursement_data", "ref_id": feed.id, "source": feed.source},
            )
        current = session.get(FeedChunk, chunk.id)
        current.state, current.accepted, current.rejected = "done", len(fresh), len(rejections)
        session.commit()
    _forget(rt, chunk.id, chunk.inbox_key)
    return "done"


def _row(feed: Feed, patient_id: str, line: CareLine) -> tuple:
    return (feed.source, line.line_id, patient_id, line.care_date, line.act_code, line.act_label, line.professional_id,
            line.professional_name, line.profession, line.amount_billed, line.amount_reimbursed, line.reimbursement_date,
            line.supersedes, line.content_hash, feed.id)  # fmt: skip


def _forget(rt: Runtime, chunk_id: str, inbox_key: str | None = None) -> None:
    if inbox_key is None:
        with rt.sessions() as session:
            chunk = session.get(FeedChunk, chunk_id)
            inbox_key = chunk.inbox_key if chunk else None
    if inbox_key:
        rt.store.delete(inbox_key)
