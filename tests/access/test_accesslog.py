"""The access log paged in SQL (pipeline/access/accesslog.py) answers exactly what the whole chain filtered by
the policy and the reader's scope, then cut into pages, answers: the same entries in the same order, whatever the
page size, by offset or by keyset; no entry about a document hidden from the reader but their own."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.access.accesslog import access_log, hidden_documents, iter_access_log
from pipeline.access.audit import AuditEvent, append, entries_for
from pipeline.access.gate import Access, Decisions
from pipeline.access.policy import Action, Actor, ActorKind, Record, access_log_scope, decide
from pipeline.index.models import AuditEntry
from tests.access.test_listing import AUTHOR_ACTOR, DOCTOR, PATIENT, PHARMACIST, REPRESENTATIVE, TODAY, record  # noqa: F401

ENTRIES = 80


def _as(actor: Actor, of: Record) -> Actor:
    return Actor(of.patient_id, ActorKind.PATIENT) if actor is PATIENT else actor


@pytest.fixture
def logged(rt, record):  # noqa: F811
    """The record's chain: ENTRIES entries by every kind of reader, about its documents (shredded and hidden ones
    included), about no document, and about a document of no record; allowed and denied."""
    from sqlalchemy import select

    from pipeline.index.models import Document

    with rt.sessions() as session:
        documents = sorted(session.scalars(select(Document.id).where(Document.patient_id == record.patient_id)))
    actors = [_as(PATIENT, record), REPRESENTATIVE, DOCTOR, PHARMACIST, AUTHOR_ACTOR]
    with rt.sessions.begin() as session:
        for n in range(ENTRIES):
            actor = actors[n % len(actors)]
            about = None if n % 9 == 0 else "00000000-0000-0000-0000-00000000beef" if n % 23 == 0 else documents[(n * 7) % len(documents)]
            denied = n % 4 == 3
            event = AuditEvent(chain=record.patient_id, actor_id=actor.id, actor_kind=actor.kind, profession=actor.profession,
                               action="read_metadata" if about else "list", document_id=about,
                               outcome="denied" if denied else "allowed", reason="not_allowed" if denied else "patient",
                               told_reason="not_found" if denied else None)  # fmt: skip
            append(session, rt.audit_key, event, dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n))
    return record


def _access(actor: Actor, of: Record) -> Access:
    decision = decide(actor, Action.READ_ACCESS_LOG, of, None, today=TODAY)
    assert decision.allowed
    return Access(of, None, decision)


def _everything_filtered(rt, actor: Actor, of: Record) -> list[int]:  # type: ignore[no-untyped-def]
    """What the reader may read of the whole chain, decided entry by entry in Python."""
    scope = access_log_scope(_access(actor, of).decision)
    decisions = Decisions(actor, Action.READ_METADATA, of, today=TODAY, emergency_reason=None)
    with rt.sessions() as session:
        every: list[AuditEntry] = entries_for(session, of.patient_id, limit=1000)
        hidden = hidden_documents(session, decisions, of.patient_id)
    own = [e for e in every if (e.actor_kind, e.actor_id) == (actor.kind, actor.id)]
    if scope.own_only:
        return [e.id for e in own]
    shown = [e for e in every if e in own or e.document_id not in hidden]
    if scope.hides_patient:
        shown = [e for e in shown if (e.actor_kind, e.actor_id) != (ActorKind.PATIENT, of.patient_id)]
    return [e.id for e in shown]


READERS = [PATIENT, REPRESENTATIVE, DOCTOR, PHARMACIST]


@pytest.mark.parametrize("reader", READERS, ids=lambda a: a.id)
def test_every_page_by_offset_is_the_whole_filtered_log_cut(rt, logged, reader):
    actor = _as(reader, logged)
    expected = _everything_filtered(rt, actor, logged)
    for page_size in (1, 7, 50):
        pages = [
            [line.entry.id for line in access_log(rt, actor, _access(actor, logged), limit=page_size, offset=start, today=TODAY)]
            for start in range(0, ENTRIES + page_size, page_size)
        ]
        assert [entry for page in pages for entry in page] == expected, page_size
        assert all(len(page) == page_size for page in pages[: len(expected) // page_size])  # no short page before the end


@pytest.mark.parametrize("reader", READERS, ids=lambda a: a.id)
def test_reading_the_log_by_keyset_gives_the_whole_filtered_log(rt, logged, reader):
    actor = _as(reader, logged)
    for page_size in (1, 6, 1000):
        read = [line.entry.id for line in iter_access_log(rt, actor, _access(actor, logged), page_size=page_size, today=TODAY)]
        assert read == _everything_filtered(rt, actor, logged), page_size


def test_no_entry_about_a_document_hidden_from_the_reader_is_read_but_their_own(rt, logged):
    decisions = Decisions(REPRESENTATIVE, Action.READ_METADATA, logged, today=TODAY, emergency_reason=None)
    with rt.sessions() as session:
        hidden = hidden_documents(session, decisions, logged.patient_id)
    lines = list(iter_access_log(rt, REPRESENTATIVE, _access(REPRESENTATIVE, logged), page_size=5, today=TODAY))
    about_hidden = [line.entry for line in lines if line.entry.document_id in hidden]
    assert hidden and lines
    assert about_hidden and all(e.actor_id == REPRESENTATIVE.id for e in about_hidden)


def test_the_attending_physician_who_sees_every_document_reads_the_whole_chain_page_by_page(rt, logged):
    attending = Actor("attending", ActorKind.PROFESSIONAL, profession="physician")
    attended = Record(logged.patient_id, attending_physician=attending.id)
    with rt.sessions() as session:
        chain = [e.id for e in entries_for(session, logged.patient_id, limit=1000)]
    read = [line.entry.id for line in iter_access_log(rt, attending, _access(attending, attended), page_size=9, today=TODAY)]
    assert read == chain and len(chain) == ENTRIES
