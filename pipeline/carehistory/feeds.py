"""Processing one feed chunk: check each line, write the good ones in bulk, record the rest.

One transaction per chunk: the lines, their rejections, the corrections they make, the
patients' notifications and the chunk's state commit together, so a retry after a crash starts
from a clean slate, and re-sending lines that are already stored changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from pipeline.carehistory.feedformat import CareLine, LineRejection, check_line, parse_chunk
from pipeline.core import metrics
from pipeline.core.clock import paris_date
from pipeline.core.metrics import Stage, timed
from pipeline.core.outage import Interrupted, failure_code, outage_of
from pipeline.core.sealedfields import DETAILS, LineSealer
from pipeline.core.storage import ObjectNotFound
from pipeline.index.models import CareEvent, Feed, FeedChunk, FeedRejection, Outbox, Patient, new_id, table_of
from pipeline.index.repo import Refusal, RowValues, among, insert_ignore, lease_held
from pipeline.index.states import AttemptOutcome, ChunkState, OutboxKind, RecordStatus
from pipeline.runtime import Runtime

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
COLUMNS = (
    "source", "line_id", "patient_id", "care_date", "details_sealed", "amount_billed", "amount_reimbursed", "reimbursement_date",
    "supersedes", "content_hash", "feed_id",
)  # fmt: skip


def _claim(session: Session, chunk_id: str, lease: dt.timedelta, resuming: int | None) -> FeedChunk | Refusal:
    """Start an attempt on a chunk (see repo.claim_item: a live lease is another attempt's)."""
    chunk = session.get(FeedChunk, chunk_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if chunk is None or chunk.state == ChunkState.DONE:
        session.rollback()
        return Refusal.FINAL
    now = dt.datetime.now(dt.UTC)
    if chunk.state == ChunkState.PROCESSING and chunk.attempts != resuming and lease_held(chunk.lease_until, now):
        session.rollback()
        return Refusal.BUSY
    chunk.state, chunk.attempts, chunk.lease_until = ChunkState.PROCESSING, chunk.attempts + 1, now + lease
    session.commit()
    return chunk


def _release(rt: Runtime, chunk: FeedChunk, waiting_for_intake: bool = False) -> None:
    """The attempt ended without storing the chunk: it waits `queued` again (best effort during an
    outage: then the lease lapses, or this message's next try takes the chunk back)."""
    mine = (FeedChunk.id == chunk.id, FeedChunk.state == ChunkState.PROCESSING, FeedChunk.attempts == chunk.attempts)
    try:
        with rt.sessions() as session:
            session.execute(update(FeedChunk).where(*mine).values(state=ChunkState.QUEUED))
            if waiting_for_intake:  # the recovery sweep leaves the feed to its intake's next run
                session.execute(update(Feed).where(Feed.id == chunk.feed_id).values(sent_at=None))
            session.commit()
    except Exception as failure:
        if outage_of(failure) is None:
            raise


def check_chunk(data: bytes, feed: Feed, chunk: FeedChunk, today: dt.date) -> tuple[list[CareLine], list[LineRejection]]:
    """Parse and check every line of a chunk on its own (no database)."""
    header = feed.header.split(",") if feed.header else None
    lines: list[CareLine] = []
    rejections: list[LineRejection] = []
    for number, raw in parse_chunk(data, feed.format, header, chunk.first_line):
        checked = LineRejection(number, None, raw) if isinstance(raw, str) else check_line(number, raw, today)
        if isinstance(checked, CareLine):
            lines.append(checked)
        else:
            rejections.append(checked)
    return lines, rejections


@dataclass
class Written:
    fresh: list[CareLine]  # stored now
    rejections: list[LineRejection]  # record closed, or a line_id already stored with other content
    notify: set[str]  # patients with new lines still to notify (the PostgreSQL path queues its own)


def _store_generic(session: Session, feed: Feed, lines: list[CareLine], rt: Runtime) -> Written:
    """Any database: look up what is known, then one executemany of the new lines."""
    insert_ignore(session, Patient, [{"id": new_id(), "ins": ins, "status": RecordStatus.OPEN} for ins in sorted({x.ins for x in lines})])
    patients = {p.ins: p for p in session.scalars(select(Patient).where(Patient.ins.in_({x.ins for x in lines})))}
    opened = {p.id for p in patients.values() if p.status == RecordStatus.OPEN}
    # An open record whose key was destroyed has no sealer: nothing can go in, as for a closed one.
    sealed = _Sealed.of_patients(rt, session, opened)
    closed = [LineRejection(x.line_number, x.line_id, "record_closed") for x in lines if patients[x.ins].id not in sealed.sealers]
    open_lines = [x for x in lines if patients[x.ins].id in sealed.sealers]
    ids = {x.line_id for x in open_lines}
    known = dict(
        session.execute(
            select(CareEvent.line_id, CareEvent.content_hash).where(CareEvent.source == feed.source, CareEvent.line_id.in_(ids))
        ).all()
    )
    fresh, duplicates = _split_known(open_lines, known, lambda x: sealed.hash(patients[x.ins].id, x))
    if fresh:
        rows = [_row(feed, pid, x, sealed.sealers[pid], sealed.hash(pid, x)) for x in fresh for pid in [patients[x.ins].id]]
        session.execute(insert(CareEvent), [dict(zip(COLUMNS, row, strict=True)) for row in rows])
    for line in fresh:
        if line.supersedes:
            target = (CareEvent.source == feed.source, CareEvent.line_id == line.supersedes)
            session.execute(update(CareEvent).where(*target).values(superseded_by=line.line_id))
    new_ids = [x.line_id for x in fresh]
    earlier = session.execute(
        select(CareEvent.supersedes, CareEvent.line_id).where(CareEvent.source == feed.source, CareEvent.supersedes.in_(new_ids))
    ).all()
    for target_id, correction in earlier:
        target = (CareEvent.source == feed.source, CareEvent.line_id == target_id)
        session.execute(update(CareEvent).where(*target).values(superseded_by=correction))
    return Written(fresh, closed + duplicates, {patients[x.ins].id for x in fresh})


class _Sealed:
    """The generic path's sealers by patient, and its lines' content hashes keyed under each patient's record key
    (pipeline/carehistory/history.py), each computed once."""

    def __init__(self, sealers: dict[str, LineSealer]) -> None:
        self.sealers = sealers
        self._hashes: dict[int, str] = {}

    @classmethod
    def of_patients(cls, rt: Runtime, session: Session, patient_ids: set[str]) -> _Sealed:
        opened = rt.record_keys.open_for_patients(session, patient_ids)
        return cls({patient_id: rt.line_sealers.get(key.id, partial(LineSealer, key.key)) for patient_id, key in opened.items()})

    def hash(self, patient_id: str, line: CareLine) -> str:
        if line.line_number not in self._hashes:
            self._hashes[line.line_number] = self.sealers[patient_id].line_hash(line.content_hash)
        return self._hashes[line.line_number]


def _split_known(
    lines: list[CareLine], known: dict[str, str], stored_hash: Callable[[CareLine], str]
) -> tuple[list[CareLine], list[LineRejection]]:
    """New lines, and rejections for line_ids known with other content; re-sends vanish. `known` (line_id -> stored
    hash) gains each new line's hash: each line's is taken once, and read back from there."""
    fresh: list[CareLine] = []
    duplicates: list[LineRejection] = []
    for line in lines:
        seen = known.get(line.line_id)
        if seen is None:
            known[line.line_id] = stored_hash(line)
            fresh.append(line)
        elif seen != stored_hash(line):
            duplicates.append(LineRejection(line.line_number, line.line_id, "duplicate_line"))
    return fresh, duplicates


def _line_sealer(records: dict[str, _Record], line: CareLine) -> LineSealer:
    sealer = records[line.ins].sealer
    assert sealer is not None  # a line of an open record
    return sealer


def _has_corrections(cursor: psycopg.Cursor[Any], source: str) -> bool:
    """Whether the source has stored any line that corrects another (the partial index on `supersedes`)."""
    cursor.execute("SELECT EXISTS (SELECT FROM care_events WHERE source = %s AND supersedes IS NOT NULL)", [source])
    return bool(cast("tuple[bool]", cursor.fetchone())[0])


def _texts(values: Iterable[str]) -> str:
    """Many strings as one parameter, read back with `json_array_elements_text`: psycopg dumps a text[]
    element by element in Python (36 ms of CPU for a chunk's 10,000 line ids), json.dumps in C (~1 ms)."""
    return json.dumps(list(values))


def _cursor(session: Session) -> psycopg.Cursor[Any]:
    return cast("psycopg.Connection[Any]", session.connection().connection.driver_connection).cursor()  # the PostgreSQL branch


@dataclass(frozen=True)
class _Record:
    patient_id: str
    sealer: LineSealer | None  # None: the record is not open, or its key was destroyed: nothing goes in


# A chunk's patients and their record keys in one statement, read in the chunk's transaction: a record closed or a key
# destroyed before this is seen (the rows are read again for every chunk, never kept). The wrapped keys themselves are
# read only for the keys this worker has no sealer of (`_KEYS`): most chunks, none (they were ~0.8 MB a chunk).
_RECORDS = (
    "SELECT i.ins, p.id, p.status, k.id, k.wrapped IS NOT NULL FROM json_array_elements_text(%s::json) AS i(ins)"
    " LEFT JOIN patients p ON p.ins = i.ins LEFT JOIN record_keys k ON k.patient_id = p.id"
)
_KEYS = "SELECT id, patient_id, master_key_id, wrapped FROM record_keys WHERE id IN (SELECT json_array_elements_text(%s::json))"


def _records(rt: Runtime, cursor: psycopg.Cursor[Any], ins_values: list[str]) -> dict[str, _Record]:
    """The records of these INS, made first for those not known yet (see `_make_records`)."""
    cursor.execute(_RECORDS, [_texts(ins_values)])
    rows = {row[0]: row for row in cursor.fetchall()}
    lacking = [ins for ins, (_, pid, status, key_id, _) in rows.items() if pid is None or (status == RecordStatus.OPEN and key_id is None)]
    if lacking:
        _make_records(rt, lacking)
        cursor.execute(_RECORDS, [_texts(lacking)])
        rows.update((row[0], row) for row in cursor.fetchall())
    usable = {ins: key_id for ins, _, status, key_id, wrapped in rows.values() if status == RecordStatus.OPEN and wrapped}
    sealers = rt.line_sealers.kept(usable.values())
    missing = [key_id for key_id in usable.values() if key_id not in sealers]
    if missing:
        cursor.execute(_KEYS, [_texts(missing)])
        for key_id, patient_id, master_key_id, wrapped in cursor.fetchall():
            if wrapped is not None:  # destroyed since the statement above: its lines are refused as the record's
                sealers[key_id] = _sealer(rt, key_id, patient_id, master_key_id, wrapped)
    return {ins: _Record(pid, sealers.get(usable[ins]) if ins in usable else None) for ins, pid, _, _, _ in rows.values()}


def _sealer(rt: Runtime, key_id: str, patient_id: str, master_key_id: str, wrapped: bytes) -> LineSealer:
    """A record key's sealer, kept per worker (Runtime.line_sealers): its key unwrapped once, not per chunk."""

    def make() -> LineSealer:
        return LineSealer(rt.record_keys.opened(key_id, patient_id, master_key_id, wrapped).key)

    return rt.line_sealers.get(key_id, make)


def _make_records(rt: Runtime, ins_values: list[str]) -> None:
    """The patients of these INS not known yet, then the record keys of the open ones that have none, each in a short
    transaction of its own (as a document's patient and key are): the other workers' chunks of the same feed, which
    share most patients, then wait for these short commits, not for this whole chunk's. A patient or key so made whose
    chunk then fails is an open record with nothing in it yet, as a retry finds it. The first key made wins; the keys
    are kept as their sealers once committed, so a key made here is never unwrapped again in this worker."""
    with rt.sessions() as own:
        # Core rows (as the record keys below), not ORM entities: the ORM's bulk path costs ~15 µs more per row.
        insert_ignore(own, table_of(Patient), [{"id": new_id(), "ins": ins, "status": RecordStatus.OPEN} for ins in ins_values])
        own.commit()
        open_ids = own.scalars(select(Patient.id).where(among(own, Patient.ins, ins_values), Patient.status == RecordStatus.OPEN)).all()
        keys = rt.record_keys.open_for_patients(own, open_ids)  # makes the missing ones (destroyed ones stay out)
        own.commit()
    for key in keys.values():
        rt.line_sealers.get(key.id, partial(LineSealer, key.key))


def _store_postgresql(session: Session, feed: Feed, lines: list[CareLine], rt: Runtime) -> Written:
    """PostgreSQL: one COPY straight into care_events; a line_id already stored (a re-send, a line in two feeds) makes
    it fail as a whole, and the chunk goes the exact way instead (`_store_through_staging`)."""
    from psycopg.errors import UniqueViolation  # the driver of this branch, loaded already

    cursor = _cursor(session)
    records = _records(rt, cursor, sorted({x.ins for x in lines}))
    closed = [LineRejection(x.line_number, x.line_id, "record_closed") for x in lines if records[x.ins].sealer is None]
    open_lines = [x for x in lines if records[x.ins].sealer is not None]
    hashes: dict[str, str] = {}  # line_id -> stored hash of its first line in the chunk (the candidate): each taken once
    candidates, in_chunk = _split_known(open_lines, hashes, lambda line: _line_sealer(records, line).line_hash(line.content_hash))
    rows = [_row(feed, records[x.ins].patient_id, x, _line_sealer(records, x), hashes[x.line_id]) for x in candidates]
    cursor.execute("SAVEPOINT care_copy")
    try:
        with cursor.copy(f"COPY care_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute("RELEASE SAVEPOINT care_copy")
        fresh, duplicates = candidates, list[LineRejection]()
    except UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT care_copy")
        fresh, duplicates = _store_through_staging(cursor, feed, candidates, rows, lambda line: hashes[line.line_id])
    # Corrections stored now supersede their targets; corrections stored earlier supersede lines stored now.
    corrections = [x.line_id for x in fresh if x.supersedes]
    if corrections:
        cursor.execute(
            "UPDATE care_events t SET superseded_by = s.line_id FROM care_events s WHERE s.source = %(src)s"
            " AND s.line_id IN (SELECT json_array_elements_text(%(new)s::json)) AND t.source = %(src)s AND t.line_id = s.supersedes",
            {"new": _texts(corrections), "src": feed.source},
        )
    # Looked up from the corrections' side (ix_care_events_supersedes, only the lines that correct one), and only if the
    # source has any: it was 10,000 lookups in the unique index per chunk (15–50 ms of the server's CPU), mostly for none.
    if fresh and _has_corrections(cursor, feed.source):
        cursor.execute(
            "UPDATE care_events t SET superseded_by = c.line_id FROM care_events c WHERE c.source = %(src)s"
            " AND c.supersedes IN (SELECT json_array_elements_text(%(new)s::json)) AND t.source = %(src)s AND t.line_id = c.supersedes",
            {"new": _texts(x.line_id for x in fresh), "src": feed.source},
        )
    cursor.execute(
        "INSERT INTO outbox (id, patient_id, kind, ref_id, source, created_at)"
        " SELECT gen_random_uuid()::text, p, 'reimbursement_data', %s, %s, now() FROM json_array_elements_text(%s::json) AS p"
        " ON CONFLICT (patient_id, kind, ref_id) DO NOTHING",
        [feed.id, feed.source, _texts(sorted({records[x.ins].patient_id for x in fresh}))],
    )
    return Written(fresh, closed + duplicates + in_chunk, set())  # notifications already queued


def _store_through_staging(
    cursor: psycopg.Cursor[Any],
    feed: Feed,
    candidates: list[CareLine],
    rows: list[tuple[object, ...]],
    stored_hash: Callable[[CareLine], str],
) -> tuple[list[CareLine], list[LineRejection]]:
    """Some line_ids are stored already: COPY into a staging table, then INSERT … ON CONFLICT DO NOTHING RETURNING
    the new ones; a known line_id with the same content is a re-send (nothing), with other content a duplicate."""
    columns = ", ".join(COLUMNS)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS care_staging AS SELECT {columns} FROM care_events WITH NO DATA")
    cursor.execute("TRUNCATE care_staging")
    with cursor.copy(f"COPY care_staging ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(
        f"INSERT INTO care_events ({columns}) SELECT {columns} FROM care_staging ON CONFLICT (source, line_id) DO NOTHING RETURNING line_id"
    )
    inserted = {row[0] for row in cursor.fetchall()}
    conflicts = [x for x in candidates if x.line_id not in inserted]
    duplicates: list[LineRejection] = []
    if conflicts:
        cursor.execute(
            "SELECT line_id, content_hash FROM care_events WHERE source = %s AND line_id IN (SELECT json_array_elements_text(%s::json))",
            [feed.source, _texts(x.line_id for x in conflicts)],
        )
        stored = dict(cursor.fetchall())
        duplicates = [
            LineRejection(x.line_number, x.line_id, "duplicate_line") for x in conflicts if stored.get(x.line_id) != stored_hash(x)
        ]
    return [x for x in candidates if x.line_id in inserted], duplicates


def process_chunk(rt: Runtime, chunk_id: str, today: dt.date | None = None, resuming: int | None = None) -> AttemptOutcome:
    """Run one attempt on a feed chunk; idempotent. An outage raises Interrupted (as process_item)."""
    with rt.sessions() as session:
        chunk = _claim(session, chunk_id, dt.timedelta(seconds=rt.settings.claim_lease_seconds), resuming)
    if chunk is Refusal.FINAL:
        forget_inbox(rt, chunk_id)
        return AttemptOutcome.DONE
    if chunk is Refusal.BUSY:
        return AttemptOutcome.BUSY
    try:
        return _store_chunk(rt, chunk, today or paris_date())
    except Exception as failure:
        _release(rt, chunk)
        service = outage_of(failure)
        if service is None:
            raise
        raise Interrupted(service, failure_code(failure), chunk.attempts) from None


def _store_chunk(rt: Runtime, chunk: FeedChunk, today: dt.date) -> AttemptOutcome:
    with rt.sessions() as session:
        feed = session.get_one(Feed, chunk.feed_id)
    try:
        with rt.store.open(chunk.inbox_key or "") as handle:
            data = handle.read()
    except ObjectNotFound:
        log.warning("feed chunk %s has no inbox object; re-send the feed to resume it", chunk.id)
        _release(rt, chunk, waiting_for_intake=True)
        return AttemptOutcome.QUEUED
    lines, rejections = check_chunk(data, feed, chunk, today)
    with timed(Stage.FEED_CHUNK), rt.sessions() as session:
        store = _store_postgresql if session.get_bind().dialect.name == "postgresql" else _store_generic
        written = store(session, feed, lines, rt) if lines else Written([], [], set())
        fresh = written.fresh
        rejections += written.rejections
        insert_ignore(session, FeedRejection, [_rejection_row(feed.id, rejection) for rejection in rejections])
        insert_ignore(session, Outbox, [_outbox_row(feed, patient_id) for patient_id in sorted(written.notify)])
        current = session.get_one(FeedChunk, chunk.id)
        current.state, current.accepted, current.rejected = ChunkState.DONE, len(fresh), len(rejections)  # lease: see forget_inbox
        session.commit()
    kind = metrics.source_kind(feed.source)
    metrics.documents_indexed.labels(kind).inc(len(fresh))
    for rejection in rejections:
        metrics.documents_rejected.labels(kind, rejection.reason).inc()
    forget_inbox(rt, chunk.id, chunk.inbox_key)
    return AttemptOutcome.DONE


def _rejection_row(feed_id: str, rejection: LineRejection) -> RowValues:
    return {"id": new_id(), "feed_id": feed_id, "line_number": rejection.line_number, "line_id": rejection.line_id,
            "reason": rejection.reason, "message": rejection.message}  # fmt: skip


def _outbox_row(feed: Feed, patient_id: str) -> RowValues:
    return {"id": new_id(), "patient_id": patient_id, "kind": OutboxKind.REIMBURSEMENT_DATA, "ref_id": feed.id, "source": feed.source}


def _row(feed: Feed, patient_id: str, line: CareLine, sealer: LineSealer, stored_hash: str) -> tuple[object, ...]:
    details = sealer.seal(feed.source, line.line_id, patient_id, [getattr(line, name) for name in DETAILS])
    return (feed.source, line.line_id, patient_id, line.care_date, details, line.amount_billed, line.amount_reimbursed,
            line.reimbursement_date, line.supersedes, stored_hash, feed.id)  # fmt: skip


def forget_inbox(rt: Runtime, chunk_id: str, inbox_key: str | None = None) -> None:
    """Remove a done chunk's inbox copy, then clear its lease (kept so that the recovery sweep
    finishes this if the worker dies in between)."""
    if inbox_key is None:
        with rt.sessions() as session:
            chunk = session.get(FeedChunk, chunk_id)
            inbox_key = chunk.inbox_key if chunk else None
    if inbox_key:
        rt.store.delete(inbox_key)
    with rt.sessions() as session:
        done = (FeedChunk.id == chunk_id, FeedChunk.state == ChunkState.DONE, FeedChunk.lease_until.is_not(None))
        session.execute(update(FeedChunk).where(*done).values(lease_until=None))
        session.commit()
