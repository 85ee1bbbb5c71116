"""Writing a feed chunk's checked lines, in the chunk's transaction (pipeline/carehistory/feeds.py): their patients'
records, the new lines (a re-send stored already changes nothing; a line_id stored with other content is a duplicate),
the corrections they make, and the patients' notifications. PostgreSQL writes with one COPY; any other database
(SQLite) looks up what is known, then inserts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from pipeline.carehistory.feedformat import CareLine, LineRejection
from pipeline.core.sealedfields import DETAILS, LineSealer
from pipeline.index.base import new_id
from pipeline.index.models import CareEvent, Feed, Outbox, Patient
from pipeline.index.repo import RowValues, insert_ignore
from pipeline.index.states import OutboxKind, RecordStatus
from pipeline.runtime import Runtime

if TYPE_CHECKING:
    import psycopg

COLUMNS = (
    "source", "line_id", "patient_id", "care_date", "details_sealed", "amount_billed", "amount_reimbursed", "reimbursement_date",
    "supersedes", "content_hash", "feed_id",
)  # fmt: skip


@dataclass
class Written:
    fresh: list[CareLine]  # stored now
    rejections: list[LineRejection]  # record closed, or a line_id already stored with other content
    patients: set[str]  # the patients of the fresh lines


def store_lines(session: Session, feed: Feed, lines: list[CareLine], rt: Runtime) -> Written:
    """Store the chunk's checked lines and queue their patients' notifications, in `session`'s transaction (uncommitted).
    Once it commits, `rt.feed_notices.committed(feed.id, written.patients)`."""
    if not lines:
        return Written([], [], set())
    postgresql = session.get_bind().dialect.name == "postgresql"
    written = (_store_postgresql if postgresql else _store_generic)(session, feed, lines, rt)
    # One row per patient and feed: those this worker saw committed already are not inserted again (notices.py).
    unseen = sorted(rt.feed_notices.unseen(feed.id, written.patients))
    if unseen and postgresql:
        _cursor(session).execute(
            "INSERT INTO outbox (id, patient_id, kind, ref_id, source, created_at)"
            " SELECT gen_random_uuid()::text, p, 'reimbursement_data', %s, %s, now() FROM json_array_elements_text(%s::json) AS p"
            " ON CONFLICT (patient_id, kind, ref_id) DO NOTHING",
            [feed.id, feed.source, _texts(unseen)],
        )
    elif unseen:
        insert_ignore(session, Outbox, [_outbox_row(feed, patient_id) for patient_id in unseen])
    return written


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
        rows = [_row(feed.source, feed.id, pid, sealed.sealers[pid], x, sealed.hash(pid, x)) for x in fresh for pid in [patients[x.ins].id]]
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


# A chunk's patients and their record keys in one statement, read in the chunk's transaction for those not kept
# (`KnownRecords`): a record closed or a key destroyed before the count of record changes is read is seen (the count
# moved: every record is read again). The wrapped keys themselves are read only for the keys this worker has no sealer
# of (`_KEYS`): most chunks, none (they were ~0.8 MB a chunk).
_RECORDS = (
    "SELECT i.ins, p.id, p.status, k.id, k.wrapped IS NOT NULL FROM json_array_elements_text(%s::json) AS i(ins)"
    " LEFT JOIN patients p ON p.ins = i.ins LEFT JOIN record_keys k ON k.patient_id = p.id"
)
_KEYS = "SELECT id, patient_id, master_key_id, wrapped FROM record_keys WHERE id IN (SELECT json_array_elements_text(%s::json))"


def _records(rt: Runtime, cursor: psycopg.Cursor[Any], ins_values: set[str]) -> dict[str, tuple[str, LineSealer]]:
    """The open records of these INS that have a key, as (patient id, sealer), made first for the INS not known yet (see
    `_make_records`). An INS left out is a record closed, or whose key was destroyed: nothing goes in. Those kept since
    an earlier chunk are not read again while no record has changed (`KnownRecords`)."""
    cursor.execute("SELECT changes FROM record_changes WHERE id = 1")
    changes = cast("tuple[int]", cursor.fetchone())[0]
    usable, rest = rt.known_records.known(changes, ins_values)
    if rest:
        rest.sort()  # the records made in INS order: two workers making the same ones take their locks in one order
        read, lacking = _read_records(cursor, rest)
        if lacking:
            _make_records(rt, lacking)
            read.update(_read_records(cursor, lacking)[0])
        rt.known_records.read(changes, read)
        usable.update(read)
    sealers = rt.line_sealers.kept(key_id for _, key_id in usable.values())
    missing = [key_id for _, key_id in usable.values() if key_id not in sealers]
    if missing:
        cursor.execute(_KEYS, [_texts(missing)])
        for key_id, patient_id, master_key_id, wrapped in cursor.fetchall():
            if wrapped is not None:  # destroyed since the statement above: its lines are refused as the record's
                sealers[key_id] = _sealer(rt, key_id, patient_id, master_key_id, wrapped)
    return {ins: (pid, sealers[key_id]) for ins, (pid, key_id) in usable.items() if key_id in sealers}


def _read_records(cursor: psycopg.Cursor[Any], ins_values: list[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The open records of these INS that have a key, as (patient id, key id), and the INS of no record or of an open
    one without a key (to make), in one pass over the rows (a chunk's ~8,000 patients, when none are kept)."""
    cursor.execute(_RECORDS, [_texts(ins_values)])
    usable: dict[str, tuple[str, str]] = {}
    lacking: list[str] = []
    for ins, patient_id, status, key_id, wrapped in cursor.fetchall():
        if patient_id is None or (status == RecordStatus.OPEN and key_id is None):
            lacking.append(ins)
        elif status == RecordStatus.OPEN and wrapped:
            usable[ins] = (patient_id, key_id)
    return usable, lacking


def _sealer(rt: Runtime, key_id: str, patient_id: str, master_key_id: str, wrapped: bytes) -> LineSealer:
    """A record key's sealer, kept per worker (Runtime.line_sealers): its key unwrapped once, not per chunk."""

    def make() -> LineSealer:
        return LineSealer(rt.record_keys.opened(key_id, patient_id, master_key_id, wrapped).key)

    return rt.line_sealers.get(key_id, make)


# A chunk's new records, as statements of one row set each (they went through `insert_ignore` and `open_for_patients`:
# one pipelined statement per row, ~2× the CPU): the patients not known yet (their other columns are the server's
# defaults), the open ones without a key row (a destroyed key keeps its row: none is made), and their new keys.
_NEW_PATIENTS = (
    "INSERT INTO patients (id, ins, status) SELECT gen_random_uuid()::text, i, %s FROM json_array_elements_text(%s::json) AS i"
    " ON CONFLICT (ins) DO NOTHING"
)
_KEYLESS = (
    "SELECT p.id FROM json_array_elements_text(%s::json) AS i(ins) JOIN patients p ON p.ins = i.ins"
    " WHERE p.status = %s AND NOT EXISTS (SELECT FROM record_keys k WHERE k.patient_id = p.id)"
)
_NEW_KEYS = (
    "INSERT INTO record_keys (id, patient_id, master_key_id, wrapped)"
    " SELECT k->>0, k->>1, k->>2, decode(k->>3, 'base64') FROM json_array_elements(%s::json) AS k"
    " ON CONFLICT (patient_id) DO NOTHING RETURNING id"
)


def _make_records(rt: Runtime, ins_values: list[str]) -> None:
    """The patients of these INS not known yet, then the record keys of the open ones that have none, each in a short
    transaction of its own (as a document's patient and key are): the other workers' chunks of the same feed, which
    share most patients, then wait for these short commits, not for this whole chunk's. A patient or key so made whose
    chunk then fails is an open record with nothing in it yet, as a retry finds it. The first key made wins (the
    others' are opened by `_records`, as any key this worker has no sealer of); the keys made here are kept as their
    sealers once committed, so none is ever unwrapped again in this worker."""
    with rt.sessions() as own:
        _cursor(own).execute(_NEW_PATIENTS, [RecordStatus.OPEN.value, _texts(ins_values)])
        own.commit()
        cursor = _cursor(own)  # the session's next transaction (its connection may be another)
        cursor.execute(_KEYLESS, [_texts(ins_values), RecordStatus.OPEN.value])
        made = [rt.record_keys.new_row(patient_id) for (patient_id,) in cursor.fetchall()]
        if not made:
            return
        rows = [[row["id"], row["patient_id"], row["master_key_id"], base64.b64encode(row["wrapped"]).decode()] for row, _ in made]
        cursor.execute(_NEW_KEYS, [json.dumps(rows)])
        won = {key_id for (key_id,) in cursor.fetchall()}
        own.commit()
    for row, key in made:
        if row["id"] in won:
            rt.line_sealers.get(row["id"], partial(LineSealer, key))


def _store_postgresql(session: Session, feed: Feed, lines: list[CareLine], rt: Runtime) -> Written:
    """PostgreSQL: one COPY straight into care_events; a line_id already stored (a re-send, a line in two feeds) makes
    it fail as a whole, and the chunk goes the exact way instead (`_store_through_staging`)."""
    from psycopg.errors import UniqueViolation  # the driver of this branch, loaded already

    cursor = _cursor(session)
    records = _records(rt, cursor, {x.ins for x in lines})
    hashes: dict[str, str] = {}  # line_id -> stored hash of its first line in the chunk (the candidate): each taken once
    closed = [LineRejection(x.line_number, x.line_id, "record_closed") for x in lines if x.ins not in records]
    open_lines = [x for x in lines if x.ins in records]
    candidates, in_chunk = _split_known(open_lines, hashes, lambda line: records[line.ins][1].line_hash(line.content_hash))
    source, feed_id = feed.source, feed.id  # read once, not per line (ORM attributes)
    rows: list[tuple[object, ...]] = []  # those written, kept for the exact way should the COPY fail

    def row_of(line: CareLine) -> tuple[object, ...]:
        return _row(source, feed_id, *records[line.ins], line, hashes[line.line_id])

    cursor.execute("SAVEPOINT care_copy")
    try:
        # Each row sealed as it is written: the server stores the first rows while the later ones are sealed (sealed
        # first, then written, the server's half of the COPY came after the whole chunk's sealing, not beside it).
        with cursor.copy(f"COPY care_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for line in candidates:
                rows.append(row_of(line))
                copy.write_row(rows[-1])
        cursor.execute("RELEASE SAVEPOINT care_copy")
        fresh, duplicates = candidates, list[LineRejection]()
    except UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT care_copy")
        # psycopg reports the violation at the COPY's end, every row written; a driver that told it sooner would leave
        # the rest unwritten, sealed here then.
        rows.extend(map(row_of, candidates[len(rows) :]))
        fresh, duplicates = _store_through_staging(cursor, feed, candidates, rows, lambda line: hashes[line.line_id])
    # Corrections stored now supersede their targets; corrections stored earlier supersede lines stored now.
    corrections = [x.line_id for x in fresh if x.supersedes]
    if corrections:
        cursor.execute(
            "UPDATE care_events t SET superseded_by = s.line_id FROM care_events s WHERE s.source = %(src)s"
            " AND s.line_id IN (SELECT json_array_elements_text(%(new)s::json)) AND t.source = %(src)s AND t.line_id = s.supersedes",
            {"new": _texts(corrections), "src": source},
        )
    # Looked up from the corrections' side (ix_care_events_supersedes, only the lines that correct one), and only if the
    # source has any: it was 10,000 lookups in the unique index per chunk (15–50 ms of the server's CPU), mostly for none.
    if fresh and _has_corrections(cursor, source):
        cursor.execute(
            "UPDATE care_events t SET superseded_by = c.line_id FROM care_events c WHERE c.source = %(src)s"
            " AND c.supersedes IN (SELECT json_array_elements_text(%(new)s::json)) AND t.source = %(src)s AND t.line_id = c.supersedes",
            {"new": _texts(x.line_id for x in fresh), "src": source},
        )
    return Written(fresh, closed + duplicates + in_chunk, {records[x.ins][0] for x in fresh})


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


def _outbox_row(feed: Feed, patient_id: str) -> RowValues:
    return {"id": new_id(), "patient_id": patient_id, "kind": OutboxKind.REIMBURSEMENT_DATA, "ref_id": feed.id, "source": feed.source}


def _row(source: str, feed_id: str, patient_id: str, sealer: LineSealer, line: CareLine, stored_hash: str) -> tuple[object, ...]:
    details = sealer.seal(source, line.line_id, patient_id, [getattr(line, name) for name in DETAILS])
    return (source, line.line_id, patient_id, line.care_date, details, line.amount_billed, line.amount_reimbursed,
            line.reimbursement_date, line.supersedes, stored_hash, feed_id)  # fmt: skip
