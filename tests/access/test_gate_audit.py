"""An access's audit entry (pipeline/access/gate.py) on its chain: on PostgreSQL the judging statement tries the
chain's lock and reads its head, so the entry costs no statement of its own for the head; when another append
holds the lock, the access waits for it and reads the head afresh; the chain never forks either way. A patient's own
listing is read by the statement that inserts the entry, and used only if the entry went in."""

from __future__ import annotations

import threading
import time

from sqlalchemy import event, func, select, text

from pipeline.access.audit import AuditEvent, append, chain_lock_params, verify
from pipeline.access.gate import Access, Decisions, check
from pipeline.access.listing import DocumentFilters, listing_beside, visible_page
from pipeline.access.policy import Action, Actor, ActorKind
from pipeline.core.clock import paris_date
from pipeline.core.keys import audit_key
from pipeline.index.models import AuditEntry, Patient
from pipeline.runtime import Runtime


def _patient(rt: Runtime) -> Actor:
    with rt.sessions.begin() as session:
        patient = Patient(ins="180017500000001", status="open")
        session.add(patient)
        session.flush()
        return Actor(patient.id, ActorKind.PATIENT)


def _seqs(rt: Runtime, chain: str) -> list[int]:
    with rt.sessions() as session:
        return list(session.scalars(select(AuditEntry.seq).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)))


def _verified(rt: Runtime) -> bool:
    with rt.sessions() as session:
        return verify(session, audit_key(rt.hmac_secret)) == []


def _append_just_before_the_next_entry(rt: Runtime, patient: Actor) -> None:
    """Just before the next statement inserting an audit entry (alone or with a read beside it) is sent: another
    append to the patient's chain, committed."""
    interloper = AuditEvent(chain=patient.id, actor_id="operator", actor_kind="operator", profession=None, action="list",
                            document_id=None, outcome="allowed", reason="test")  # fmt: skip
    appended: list[bool] = []

    def append_first(_connection, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        if "INSERT INTO audit_entries" in statement and not appended:
            appended.append(True)
            with rt.sessions.begin() as other:
                append(other, audit_key(rt.hmac_secret), interloper)

    event.listen(rt.engine, "before_cursor_execute", append_first)


def test_an_access_reads_its_chains_head_in_the_judging_statement(rt):
    patient = _patient(rt)
    check(rt, patient, Action.LIST, patient.id)
    statements: list[str] = []
    event.listen(rt.engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: statements.append(statement))
    assert isinstance(check(rt, patient, Action.LIST, patient.id), Access)
    if rt.engine.dialect.name == "postgresql":
        assert len(statements) == 2  # the judging statement (record, chain lock tried, head) and the entry's insert
    else:
        assert len(statements) == 3  # SQLite (no lock to take): the record, the head, the insert
    assert _seqs(rt, patient.id) == [1, 2]
    assert _verified(rt)


def test_an_access_that_finds_the_chains_lock_held_waits_and_appends_after_its_holder(rt):
    if rt.engine.dialect.name != "postgresql":
        return  # the chain's lock is PostgreSQL's (SQLite serializes writers itself)
    patient = _patient(rt)
    check(rt, patient, Action.LIST, patient.id)
    answers: list[object] = []
    with rt.sessions() as holder:
        # Another append to the chain, holding the lock: the access's judging statement reads the head before it.
        holder.execute(text("SELECT pg_advisory_xact_lock(:chain_lock_id)"), chain_lock_params(patient.id))
        check_thread = threading.Thread(target=lambda: answers.append(check(rt, patient, Action.LIST, patient.id)))
        check_thread.start()
        time.sleep(0.3)
        assert answers == []  # waiting for the lock
        event = AuditEvent(chain=patient.id, actor_id="operator", actor_kind="operator", profession=None, action="list",
                           document_id=None, outcome="allowed", reason="test")  # fmt: skip
        append(holder, audit_key(rt.hmac_secret), event)
        holder.commit()
        check_thread.join(timeout=30)
    assert len(answers) == 1 and isinstance(answers[0], Access)
    assert _seqs(rt, patient.id) == [1, 2, 3]  # appended after the holder's entry, not on the head it read first
    assert _verified(rt)


def test_concurrent_accesses_to_one_record_never_fork_its_chain(rt):
    patient = _patient(rt)
    threads, per_thread = 6, 5
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                assert isinstance(check(rt, patient, Action.LIST, patient.id), Access)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    assert _seqs(rt, patient.id) == list(range(1, threads * per_thread + 1))
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == threads * per_thread
    assert _verified(rt)


def test_a_patients_own_access_is_judged_and_audited_without_a_transaction_on_postgresql(rt):
    patient = _patient(rt)
    check(rt, patient, Action.LIST, patient.id)
    commits: list[object] = []
    event.listen(rt.engine, "commit", lambda connection: commits.append(connection))
    assert isinstance(check(rt, patient, Action.LIST, patient.id), Access)
    # PostgreSQL: two autocommit statements (no BEGIN nor COMMIT); SQLite: the transaction.
    assert len(commits) == (0 if rt.engine.dialect.name == "postgresql" else 1)
    assert _seqs(rt, patient.id) == [1, 2]
    assert _verified(rt)


def test_an_access_whose_head_went_stale_before_its_insert_appends_after_the_newer_entry_in_a_transaction(rt):
    patient = _patient(rt)
    check(rt, patient, Action.LIST, patient.id)
    _append_just_before_the_next_entry(rt, patient)
    with rt.reads() as reads:  # the caller's session (as the list route's): still usable after the refused insert
        assert isinstance(check(rt, patient, Action.LIST, patient.id, reads=reads), Access)
        assert reads.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.chain == patient.id)) == 3
    assert _seqs(rt, patient.id) == [1, 2, 3]  # the access's entry after the other, the chain unforked
    assert _verified(rt)


def test_a_patients_own_listing_is_read_by_the_statement_that_appends_its_entry_on_postgresql(rt):
    patient = _patient(rt)
    check(rt, patient, Action.LIST, patient.id)
    statements: list[str] = []
    event.listen(rt.engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: statements.append(statement))
    beside = listing_beside(patient.id, DocumentFilters(), page=1, page_size=50)
    assert beside is not None
    with rt.reads() as reads:
        access = check(rt, patient, Action.LIST, patient.id, reads=reads, beside=beside)
        assert isinstance(access, Access)
        decisions = Decisions(patient, Action.LIST, access.record, today=paris_date(), emergency_reason=None)
        listed = visible_page(reads, decisions, patient.id, DocumentFilters(), page=1, page_size=50, read=beside.rows)
    assert listed.documents == [] and listed.total == 0  # a record without documents still names the entry it appended
    if rt.engine.dialect.name == "postgresql":
        assert len(statements) == 2  # the judging statement; the entry's insert with the page and its count
        assert beside.rows is not None
    else:
        assert beside.rows is None  # SQLite: the transaction, and the listing read apart
    assert _seqs(rt, patient.id) == [1, 2]
    assert _verified(rt)


def test_a_listing_whose_entry_was_refused_is_not_used_and_the_entry_appended_in_a_transaction(rt):
    patient = _patient(rt)
    check(rt, patient, Action.LIST, patient.id)
    _append_just_before_the_next_entry(rt, patient)  # the access's entry, with the listing beside it
    beside = listing_beside(patient.id, DocumentFilters(), page=1, page_size=50)
    assert beside is not None
    with rt.reads() as reads:
        assert isinstance(check(rt, patient, Action.LIST, patient.id, reads=reads, beside=beside), Access)
    assert beside.rows is None  # read by a statement whose entry did not go in: the caller reads the listing itself
    assert _seqs(rt, patient.id) == [1, 2, 3]
    assert _verified(rt)
