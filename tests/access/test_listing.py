"""A record's listing paged in SQL (pipeline/access/listing.py) answers exactly what the whole record filtered
by the policy, then cut into pages, answers: the same documents in the same order on every page, the same
total, nothing hidden; across chunk boundaries, with hidden and masked documents interleaved."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from sqlalchemy import event, select
from sqlalchemy.dialects import sqlite

from pipeline.access.accesslog import hidden_documents
from pipeline.access.gate import Decisions, visible
from pipeline.access.listing import DocumentFilters, _statement, visible_page
from pipeline.access.policy import Action, Actor, ActorKind, Record
from pipeline.access.recordview import POLICY_COLUMNS, POLICY_FIELD_COLUMNS, policy_fields
from pipeline.index.models import LIVE_DOCUMENT, Batch, BatchItem, Document, Patient, RecordKey

SOURCE = "hospital:H1"
TODAY = dt.date(2026, 11, 27)
AUTHOR = "pro-author"
# Classes a pharmacist reads only in part (access_matrix.csv): 10 with type 11502-2 only, 11 but not 59259-2.
KINDS = [("10", "11502-2"), ("10", "11488-4"), ("11", "34133-9"), ("11", "59259-2"), ("42", "57833-6"), ("31", "18748-4")]

PATIENT = Actor("patient-id", ActorKind.PATIENT)  # the id is the record's, set by the fixture
REPRESENTATIVE = Actor("parent", ActorKind.LEGAL_REPRESENTATIVE)
DOCTOR = Actor("doctor", ActorKind.PROFESSIONAL, profession="physician")
PHARMACIST = Actor("pharmacist", ActorKind.PROFESSIONAL, profession="pharmacist")
AUTHOR_ACTOR = Actor(AUTHOR, ActorKind.PROFESSIONAL, profession="physician")


def _document(session, patient_id: str, key_id: str, batch_id: str, n: int) -> None:  # type: ignore[no-untyped-def]
    item = BatchItem(batch_id=batch_id, slot=f"row:{n}", file=f"{n}.pdf", state="indexed")
    session.add(item)
    session.flush()
    class_code, type_code = KINDS[n % len(KINDS)]
    document_id = str(uuid.UUID(int=(n * 7919) % 1000 + 1))  # ids not in insertion order
    # Deposited over a few days, one late in the UTC evening (a later date in Paris).
    created = dt.datetime(2026, 11, 20 + n % 5, 23 if n % 11 == 0 else 9, 30, tzinfo=dt.UTC)
    session.add(
        Document(
            id=document_id,
            patient_id=patient_id,
            source=SOURCE if n % 4 else "hospital:H2",
            source_document_id=f"doc-{n}",
            batch_item_id=item.id,
            class_code=class_code,
            type_code=type_code,
            classified_by="test",
            masked=n % 5 == 0,
            hidden_from_patient_until=TODAY + dt.timedelta(days=30) if n % 7 == 3 else None,
            hidden_from_representatives=n % 6 == 1,
            # Ties on the service date (the id breaks them) and documents without one.
            service_date=None if n % 13 == 0 else dt.date(2020, 1, 1) + dt.timedelta(days=n // 3),
            author_id=AUTHOR if n % 2 else None,
            author_profession="physician",
            mime_type="application/pdf",
            size=10,
            content_hmac=uuid.uuid4().hex,
            object_key=f"objects/{document_id}",
            record_key_id=key_id,
            wrapped_key=None if n % 17 == 5 else b"wrapped-data-key",  # a few shredded: never listed
            created_at=created,
        )
    )


@pytest.fixture
def record(rt) -> Record:  # type: ignore[no-untyped-def]
    """A record of 90 documents: masked, hidden from the patient, hidden from representatives, of classes a
    pharmacist may and may not read, shredded, without a service date, sharing one."""
    with rt.sessions.begin() as session:
        batch = Batch(source=SOURCE, manifest_digest=uuid.uuid4().hex, total=90)
        patient = Patient(ins="180017500000001", status="open")
        session.add_all([batch, patient])
        session.flush()
        key = RecordKey(patient_id=patient.id, master_key_id="test-master", wrapped=b"wrapped-record-key")
        session.add(key)
        session.flush()
        for n in range(90):
            _document(session, patient.id, key.id, batch.id, n)
    return Record(patient.id, representatives=frozenset({REPRESENTATIVE.id}), care_team=frozenset({DOCTOR.id, PHARMACIST.id, AUTHOR}))


def _everything_then_cut(rt, actor: Actor, record: Record, filters: DocumentFilters, page: int, page_size: int):  # type: ignore[no-untyped-def]
    """What the listing answered before it paged in SQL: every row of the record, filtered by the policy, cut."""
    query = select(*POLICY_COLUMNS).where(Document.patient_id == record.patient_id, Document.live)
    if filters.class_code:
        query = query.where(Document.class_code == filters.class_code)
    if filters.served_from:
        query = query.where(Document.service_date >= filters.served_from)
    if filters.served_to:
        query = query.where(Document.service_date <= filters.served_to)
    with rt.sessions() as session:
        rows = session.execute(query.order_by(Document.service_date.desc(), Document.id)).all()
    shown = visible(actor, Action.LIST, record, rows, today=TODAY, emergency_reason=None)
    start = (page - 1) * page_size
    return [row.id for row in shown[start : start + page_size]], len(shown)


def _paged(rt, actor: Actor, record: Record, filters: DocumentFilters, page: int, page_size: int, chunk: int):  # type: ignore[no-untyped-def]
    decisions = Decisions(actor, Action.LIST, record, today=TODAY, emergency_reason=None)
    with rt.sessions() as session:
        listed = visible_page(session, decisions, record.patient_id, filters, page=page, page_size=page_size, chunk=chunk)
    return [document.id for document in listed.documents], listed.total


def _as(actor: Actor, record: Record) -> Actor:
    return Actor(record.patient_id, ActorKind.PATIENT) if actor is PATIENT else actor


@pytest.mark.parametrize("actor", [PATIENT, REPRESENTATIVE, DOCTOR, PHARMACIST, AUTHOR_ACTOR], ids=lambda a: a.id)
def test_every_page_and_the_total_are_those_of_the_whole_record_filtered_then_cut(rt, record, actor):
    actor = _as(actor, record)
    for page_size, chunk in ((1, 2), (7, 3), (10, 200), (50, 4)):
        for page in range(1, 90 // page_size + 3):  # up to past the end
            expected = _everything_then_cut(rt, actor, record, DocumentFilters(), page, page_size)
            assert _paged(rt, actor, record, DocumentFilters(), page, page_size, chunk) == expected, (page_size, chunk, page)


@pytest.mark.parametrize(
    "filters",
    [DocumentFilters(class_code="10"), DocumentFilters(served_from=dt.date(2020, 1, 10), served_to=dt.date(2020, 1, 20))],
    ids=["class", "dates"],
)
def test_filtered_pages_are_those_of_the_filtered_record_cut(rt, record, filters):
    for actor in (_as(PATIENT, record), PHARMACIST):
        for page in (1, 2, 3):
            assert _paged(rt, actor, record, filters, page, 4, 3) == _everything_then_cut(rt, actor, record, filters, page, 4)


def test_a_page_of_a_record_with_hidden_documents_is_full_and_the_next_one_continues_it(rt, record):
    first, total = _paged(rt, PHARMACIST, record, DocumentFilters(), 1, 5, 2)
    second, _ = _paged(rt, PHARMACIST, record, DocumentFilters(), 2, 5, 2)
    everything, _ = _paged(rt, PHARMACIST, record, DocumentFilters(), 1, 90, 2)
    assert len(first) == len(second) == 5 and first + second == everything[:10] and total == len(everything) < 85


def test_nothing_the_policy_hides_from_the_actor_is_listed(rt, record):
    pages = [_paged(rt, PHARMACIST, record, DocumentFilters(), page, 6, 4)[0] for page in range(1, 20)]
    listed = {document_id for page in pages for document_id in page}
    with rt.sessions() as session:
        documents = session.scalars(select(Document).where(Document.id.in_(listed))).all()
    decisions = Decisions(PHARMACIST, Action.LIST, record, today=TODAY, emergency_reason=None)
    assert listed and all(document.live and decisions.allows(policy_fields(document)) for document in documents)


def test_the_fields_the_query_groups_by_are_those_the_policy_reads_of_each_row(rt, record):
    with rt.sessions() as session:
        rows = session.execute(select(Document.id, *POLICY_FIELD_COLUMNS).where(Document.patient_id == record.patient_id)).all()
        documents = {d.id: d for d in session.scalars(select(Document).where(Document.patient_id == record.patient_id))}
    assert rows and all(tuple(row[1:]) == policy_fields(documents[row.id]) for row in rows)


@pytest.mark.parametrize("actor", [PATIENT, REPRESENTATIVE, DOCTOR, PHARMACIST], ids=lambda a: a.id)
def test_the_access_log_hides_the_entries_of_exactly_the_documents_the_policy_hides(rt, record, actor):
    actor = _as(actor, record)
    decisions = Decisions(actor, Action.READ_METADATA, record, today=TODAY, emergency_reason=None)
    with rt.sessions() as session:
        every = session.scalars(select(Document).where(Document.patient_id == record.patient_id)).all()  # shredded too
        hidden = hidden_documents(session, decisions, record.patient_id)
    assert hidden == {d.id for d in every if not decisions.allows(policy_fields(d))}


def test_the_access_log_of_a_reader_who_sees_everything_hides_nothing(rt, record):
    attending = Actor("attending", ActorKind.PROFESSIONAL, profession="physician")
    decisions = Decisions(attending, Action.READ_METADATA, Record(record.patient_id, attending_physician="attending"), today=TODAY,
                          emergency_reason=None)  # fmt: skip
    with rt.sessions() as session:
        assert hidden_documents(session, decisions, record.patient_id) == frozenset()


def test_the_listings_statements_are_core_statements_filtering_on_live_documents() -> None:
    """Built of the table's own columns, `Document.live` as LIVE_DOCUMENT: statements every list request runs pass
    no ORM compile step (`compile_state_plugin`) on each execution, and keep exactly the live documents."""
    assert str(LIVE_DOCUMENT) == str(select(Document.id).where(Document.live)).rsplit("WHERE ", 1)[1]
    for shape in itertools.product((False, True), repeat=5):
        statement = _statement(shape)  # type: ignore[arg-type]
        assert statement._propagate_attrs.get("compile_state_plugin") != "orm"
        assert str(statement.compile(dialect=sqlite.dialect())).count(str(LIVE_DOCUMENT)) == 2  # the page's and the count's


def test_a_page_and_its_count_are_read_in_one_statement_when_the_actor_sees_every_document(rt, record):
    attending = Actor("attending", ActorKind.PROFESSIONAL, profession="physician")
    decisions = Decisions(attending, Action.LIST, Record(record.patient_id, attending_physician="attending"), today=TODAY,
                          emergency_reason=None)  # fmt: skip
    statements: list[str] = []
    event.listen(rt.engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: statements.append(statement))
    with rt.sessions() as session:
        listed = visible_page(session, decisions, record.patient_id, DocumentFilters(), page=2, page_size=10)
    assert len(statements) == 1 and len(listed.documents) == 10 and listed.total == 90 - 5  # 5 of the 90 shredded
