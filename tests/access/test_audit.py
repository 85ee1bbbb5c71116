"""The access log's per-patient hash chains, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading

import pytest
from sqlalchemy import func, select, text

from pipeline.access import audit, auditchain
from pipeline.access.audit import (
    GENESIS,
    AuditEvent,
    BrokenLink,
    append,
    append_with_retry,
    entries_for,
    open_justifications,
    verify,
)
from pipeline.core.keys import audit_key, new_key
from pipeline.core.sealedfields import justification_context, seal_text
from pipeline.core.settings import Settings
from pipeline.index.db import transact
from pipeline.index.models import AuditEntry
from pipeline.runtime import Runtime

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
T0 = dt.datetime(2026, 11, 23, 9, 30, 0, 123456, tzinfo=dt.UTC)
RECORD_KEY = new_key()  # stands for the record key of the chain's patient


def _event(chain: str = ALICE, actor: str = "10001234567", outcome: str = "allowed", **extra) -> AuditEvent:
    values = dict(chain=chain, actor_id=actor, actor_kind="professional", profession="physician", action="read",
                  document_id="d0c00000-0000-4000-8000-000000000001", outcome=outcome, reason="care_team")  # fmt: skip
    values.update(extra)
    return AuditEvent(**values)


def _append(rt: Runtime, events: list[AuditEvent]) -> list[AuditEntry]:
    key = audit_key(rt.hmac_secret)
    with rt.sessions() as session:
        entries = [append(session, key, event, at=T0 + dt.timedelta(minutes=i), record_key=RECORD_KEY) for i, event in enumerate(events)]
        session.commit()
    return entries


def _verify(rt: Runtime, chain: str | None = None) -> list[BrokenLink]:
    with rt.sessions() as session:
        return verify(session, audit_key(rt.hmac_secret), chain)


def _sql(rt: Runtime, statement: str, **params) -> None:
    with rt.sessions() as session:
        session.execute(text(statement), params)
        session.commit()


def _ids(rt: Runtime, chain: str) -> dict[int, int]:
    with rt.sessions() as session:
        return dict(session.execute(select(AuditEntry.seq, AuditEntry.id).where(AuditEntry.chain == chain)).all())


def test_appended_entries_form_a_chain_that_verifies(rt):
    entries = _append(rt, [_event(), _event(outcome="denied", reason="not_in_care_team"), _event(emergency=True, reason="emergency")])
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]
    assert len({e.entry_hash for e in entries}) == 3
    with rt.sessions() as session:
        stored = entries_for(session, ALICE)
    assert [(e.seq, e.outcome, e.emergency, e.at.replace(tzinfo=e.at.tzinfo or dt.UTC)) for e in stored] == [
        (1, "allowed", False, T0),
        (2, "denied", False, T0 + dt.timedelta(minutes=1)),
        (3, "allowed", True, T0 + dt.timedelta(minutes=2)),
    ]
    assert _verify(rt) == [] and _verify(rt, ALICE) == []


def test_chains_are_per_patient_and_interleaved_chains_each_verify(rt, monkeypatch):
    monkeypatch.setattr(auditchain, "VERIFY_BATCH", 3)  # several fetches, with chain boundaries inside them
    entries = _append(rt, [_event(chain=[ALICE, BOB, audit.NO_PATIENT][i % 3]) for i in range(10)])
    by_chain: dict[str, list[int]] = {}
    for entry in entries:
        by_chain.setdefault(entry.chain, []).append(entry.seq)
    assert by_chain == {ALICE: [1, 2, 3, 4], BOB: [1, 2, 3], "-": [1, 2, 3]}
    assert _verify(rt) == []
    assert _verify(rt, BOB) == []


def test_entries_appended_many_at_once_continue_each_chain_and_verify(rt):
    _append(rt, [_event(chain=ALICE), _event(chain=BOB)])
    with rt.sessions() as session:
        audit.append_many(session, audit_key(rt.hmac_secret), [_event(chain=c) for c in (ALICE, BOB, ALICE, audit.NO_PATIENT)], at=T0)
        session.commit()
    with rt.sessions() as session:
        rows = session.execute(select(AuditEntry.chain, AuditEntry.seq).order_by(AuditEntry.id)).all()
    assert [tuple(row) for row in rows] == [(ALICE, 1), (BOB, 1), (ALICE, 2), (BOB, 2), (ALICE, 3), ("-", 1)]
    assert _verify(rt) == []


def test_concurrent_batched_and_single_appends_never_fork_a_chain(rt):
    key = audit_key(rt.hmac_secret)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def batched() -> None:
        for _ in range(5):
            transact(rt.sessions, lambda s: audit.append_many(s, key, [_event(chain=BOB), _event(chain=ALICE)]), retries=49)

    def single() -> None:
        for _ in range(5):
            append_with_retry(rt.sessions, key, _event(chain=ALICE), attempts=50)

    def run(work) -> None:  # noqa: ANN001
        try:
            start.wait()
            work()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(work,)) for work in (batched, batched, single, single)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with rt.sessions() as session:
        seqs = session.scalars(select(AuditEntry.seq).where(AuditEntry.chain == ALICE).order_by(AuditEntry.seq)).all()
    assert seqs == list(range(1, 21))
    assert _verify(rt) == []


def test_an_outcome_rewritten_outside_the_vocabulary_is_a_hash_mismatch_not_a_crash(rt):
    _append(rt, [_event(outcome="denied", reason="not_in_care_team") for _ in range(2)])
    _sql(rt, "UPDATE audit_entries SET outcome = 'maybe' WHERE chain = :c AND seq = 2", c=ALICE)
    assert _verify(rt) == [BrokenLink(ALICE, 2, _ids(rt, ALICE)[2], "hash_mismatch")]


def test_an_altered_row_is_a_hash_mismatch_at_its_position(rt):
    _append(rt, [_event(outcome="denied", reason="not_in_care_team") for _ in range(5)] + [_event(chain=BOB)])
    _sql(rt, "UPDATE audit_entries SET outcome = 'allowed' WHERE chain = :c AND seq = 3", c=ALICE)
    assert _verify(rt) == [BrokenLink(ALICE, 3, _ids(rt, ALICE)[3], "hash_mismatch")]
    _sql(rt, "UPDATE audit_entries SET reason = 'patient_consent' WHERE chain = :c AND seq = 1", c=BOB)
    assert _verify(rt) == [BrokenLink(ALICE, 3, _ids(rt, ALICE)[3], "hash_mismatch"), BrokenLink(BOB, 1, _ids(rt, BOB)[1], "hash_mismatch")]
    assert _verify(rt, BOB) == [BrokenLink(BOB, 1, _ids(rt, BOB)[1], "hash_mismatch")]


def test_a_deleted_row_breaks_the_chain_at_the_next_entry(rt):
    _append(rt, [_event() for _ in range(5)])
    _sql(rt, "DELETE FROM audit_entries WHERE chain = :c AND seq = 3", c=ALICE)
    assert _verify(rt) == [BrokenLink(ALICE, 4, _ids(rt, ALICE)[4], "seq_gap")]


def test_a_deleted_row_hidden_by_renumbering_is_still_detected(rt):
    _append(rt, [_event() for _ in range(5)])
    _sql(rt, "DELETE FROM audit_entries WHERE chain = :c AND seq = 3", c=ALICE)
    _sql(rt, "UPDATE audit_entries SET seq = seq - 1 WHERE chain = :c AND seq = 4", c=ALICE)
    _sql(rt, "UPDATE audit_entries SET seq = seq - 1 WHERE chain = :c AND seq = 5", c=ALICE)
    assert _verify(rt) == [BrokenLink(ALICE, 3, _ids(rt, ALICE)[3], "hash_mismatch")]


def test_a_row_rebuilt_with_plain_sha256_without_the_key_is_detected(rt):
    entries = _append(rt, [_event(outcome="denied", reason="not_in_care_team") for _ in range(4)])
    # The attacker knows the encoding but not the key: they rewrite entry 2 and relink the rest with SHA-256.
    prev = entries[0].entry_hash
    for entry in entries[1:]:
        outcome = "allowed" if entry.seq == 2 else entry.outcome
        fields = dict(chain=entry.chain, seq=entry.seq, at=entry.at, actor_id=entry.actor_id, actor_kind=entry.actor_kind,
                      profession=entry.profession, action=entry.action, document_id=entry.document_id, outcome=outcome,
                      reason=entry.reason, emergency=entry.emergency, prev_hash=prev)  # fmt: skip
        forged = hashlib.sha256(audit.canonical_encoding(**fields)).hexdigest()
        _sql(rt, "UPDATE audit_entries SET outcome = :o, prev_hash = :p, entry_hash = :h WHERE id = :i",
             o=outcome, p=prev, h=forged, i=entry.id)  # fmt: skip
        prev = forged
    assert _verify(rt) == [BrokenLink(ALICE, 2, entries[1].id, "hash_mismatch")]


def test_a_valid_row_moved_to_another_chain_is_detected(rt):
    _append(rt, [_event(), _event(chain=BOB), _event(chain=BOB)])
    _sql(rt, "DELETE FROM audit_entries WHERE chain = :c AND seq = 2", c=BOB)
    _sql(rt, "UPDATE audit_entries SET chain = :b, seq = 2 WHERE chain = :a", a=ALICE, b=BOB)
    assert _verify(rt) == [BrokenLink(BOB, 2, _ids(rt, BOB)[2], "hash_mismatch")]


def test_concurrent_appends_on_one_chain_never_fork_it(rt):
    key = audit_key(rt.hmac_secret)
    threads, per_thread = 6, 5
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                append_with_retry(rt.sessions, key, _event(actor=f"actor-{n}"), attempts=50)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    with rt.sessions() as session:
        seqs = session.scalars(select(AuditEntry.seq).where(AuditEntry.chain == ALICE).order_by(AuditEntry.seq)).all()
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == threads * per_thread
    assert seqs == list(range(1, threads * per_thread + 1))
    assert _verify(rt) == []


def test_a_professional_reads_only_the_entries_about_their_own_actions(rt):
    denied = _event(actor="dr-a", outcome="denied", reason="masked")
    _append(rt, [_event(actor="dr-a"), _event(actor="dr-b"), denied, _event(chain=BOB, actor="dr-a")])
    with rt.sessions() as session:
        own = entries_for(session, ALICE, actor_id="dr-a")
        everything = entries_for(session, ALICE)
        page = entries_for(session, ALICE, limit=1, offset=1)
    assert [(e.chain, e.seq, e.actor_id) for e in own] == [(ALICE, 1, "dr-a"), (ALICE, 3, "dr-a")]
    assert [e.actor_id for e in everything] == ["dr-a", "dr-b", "dr-a"]
    assert [e.seq for e in page] == [2]


def test_events_the_columns_cannot_hold_are_refused_alike_on_both_databases(rt):
    key = audit_key(rt.hmac_secret)
    with rt.sessions() as session:
        for bad in (_event(outcome="maybe"), _event(actor=""), _event(reason="x" * 65), _event(chain="c" * 65)):
            with pytest.raises(ValueError):
                append(session, key, bad)
    assert _verify(rt) == []


def test_dmp_audit_verify_names_the_tampered_entry(tmp_path):
    from sqlalchemy import text
    from typer.testing import CliRunner

    from pipeline.access.audit import AuditEvent, append
    from pipeline.cli import app
    from pipeline.runtime import Runtime

    rt = Runtime.from_settings(Settings(home=tmp_path / "home"), prepare=True)
    key = audit_key(rt.hmac_secret)
    with rt.sessions() as session:
        for n in range(4):
            append(
                session,
                key,
                AuditEvent("patient-1", f"dr-{n}", "professional", "physician", "read_content", "doc-1", "allowed", "care_team"),
            )
        session.commit()
    runner, env = CliRunner(), {"DMP_HOME": str(tmp_path / "home")}
    assert runner.invoke(app, ["audit", "verify"], env=env).exit_code == 0
    with rt.sessions() as session:
        session.execute(text("UPDATE audit_entries SET outcome = 'denied' WHERE chain = 'patient-1' AND seq = 3"))
        session.commit()
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 1
    assert "chain patient-1 at seq 3" in result.output and "hash_mismatch" in result.output
    rt.close()


# The forged justification is even sealed right (same key, same entry): the hash still tells.
FORGED_JUSTIFICATION = seal_text(RECORD_KEY, "routine check", justification_context(ALICE, 2))


# Ids by name: a bytes value's repr differs from run to run, and pytest-xdist's processes must collect the same ids.
@pytest.mark.parametrize(
    ("column", "forged"),
    [("justification_sealed", FORGED_JUSTIFICATION), ("told_reason", None)],
    ids=["justification_sealed", "told_reason"],
)
def test_the_justification_and_what_the_actor_was_told_are_covered_by_the_entry_hash(rt, column, forged):
    told = _event(actor="dr-a", outcome="denied", reason="masked", told_reason="not_found")
    emergency = _event(actor="dr-b", reason="emergency_override", emergency=True, justification="unconscious, suspected overdose")
    _append(rt, [told, emergency])
    seq = 1 if column == "told_reason" else 2
    _sql(rt, f"UPDATE audit_entries SET {column} = :v WHERE chain = :c AND seq = :s", v=forged, c=ALICE, s=seq)
    assert _verify(rt) == [BrokenLink(ALICE, seq, _ids(rt, ALICE)[seq], "hash_mismatch")]


def test_new_entries_keep_the_justification_and_what_the_actor_was_told(rt):
    _append(rt, [_event(reason="emergency_override", emergency=True, justification="cardiac arrest"), _event(told_reason="not_found")])
    with rt.sessions() as session:
        stored = entries_for(session, ALICE)
    opened = open_justifications(stored, RECORD_KEY)
    assert [(e.version, opened[e.id], e.told_reason) for e in stored] == [(2, "cardiac arrest", None), (2, None, "not_found")]
    assert _verify(rt) == []


def test_the_justification_is_kept_sealed_under_the_record_key(rt):
    _append(rt, [_event(reason="emergency_override", emergency=True, justification="cardiac arrest")])
    with rt.sessions() as session:
        (entry,) = entries_for(session, ALICE)
    assert b"cardiac" not in entry.justification_sealed
    assert open_justifications([entry], RECORD_KEY) == {entry.id: "cardiac arrest"}
    assert open_justifications([entry], new_key()) == {entry.id: None}


def test_a_sealed_justification_copied_to_another_entry_does_not_open_there(rt):
    _append(rt, [_event(reason="emergency_override", emergency=True, justification="cardiac arrest"), _event(emergency=True)])
    _sql(rt, "UPDATE audit_entries SET justification_sealed = (SELECT justification_sealed FROM audit_entries WHERE chain = :c"
         " AND seq = 1) WHERE chain = :c AND seq = 2", c=ALICE)  # fmt: skip
    with rt.sessions() as session:
        copied = entries_for(session, ALICE)[1]
    assert copied.justification_sealed is not None
    assert open_justifications([copied], RECORD_KEY) == {copied.id: None}


def test_entries_with_no_record_keep_no_justification(rt):
    """The "-" chain is about no record: no key to seal under, nobody to show it to."""
    (entry,) = _append(rt, [_event(chain=audit.NO_PATIENT, outcome="denied", reason="not_found", justification="cardiac arrest")])
    assert entry.justification_sealed is None
    assert _verify(rt) == []


def test_an_entry_whose_record_key_is_gone_keeps_no_justification(rt):
    """A destroyed record: its justification could never be opened, so none is kept."""
    with rt.sessions() as session:
        entry = append(session, audit_key(rt.hmac_secret), _event(emergency=True, justification="cardiac arrest"))
        session.commit()
    assert entry.justification_sealed is None
    assert _verify(rt) == []


def test_entries_written_before_encoding_version_2_still_verify_after_the_migration(database_url, tmp_path):
    """A chain started under the version 1 encoding (schema 0004), migrated, then continued: it verifies whole."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.core.keys import load_key_file
    from pipeline.index.db import make_engine, upgrade

    settings = Settings(home=tmp_path / "home", database_url=database_url)
    settings.home.mkdir(mode=0o700)
    key, prev = audit_key(load_key_file(settings.resolved_key_file(), create=True).hmac_secret), GENESIS
    engine = make_engine(database_url)
    upgrade(engine, "0004")
    with engine.begin() as connection:
        for seq in (1, 2):
            fields = dict(chain=ALICE, seq=seq, at=T0 + dt.timedelta(minutes=seq), actor_id="dr-old", actor_kind="professional",
                          profession="physician", action="read_content", document_id=None, outcome="denied",
                          reason="not_in_care_team", emergency=False, prev_hash=prev)  # fmt: skip
            digest = hmac.new(key, audit.canonical_encoding(**fields, version=1), hashlib.sha256).hexdigest()
            connection.execute(text(
                "INSERT INTO audit_entries (chain, seq, at, actor_id, actor_kind, profession, action, document_id, outcome,"
                " reason, emergency, prev_hash, entry_hash) VALUES (:chain, :seq, :at, :actor_id, :actor_kind, :profession,"
                " :action, :document_id, :outcome, :reason, :emergency, :prev_hash, :entry_hash)"
            ), {**fields, "entry_hash": digest})  # fmt: skip
            prev = digest
    upgrade(engine)
    engine.dispose()
    runtime = Runtime.from_settings(settings)
    emergency = _event(reason="emergency_override", emergency=True, justification="anaphylaxis")
    append_with_retry(runtime.sessions, key, emergency, record_key=lambda _session, _patient: RECORD_KEY)
    with runtime.sessions() as session:
        entries = entries_for(session, ALICE)
        opened = open_justifications(entries, RECORD_KEY)
        assert [(e.version, opened[e.id]) for e in entries] == [(1, None), (1, None), (2, "anaphylaxis")]
        assert verify(session, key) == []
    runtime.close()
    env = {"DMP_HOME": str(settings.home), "DMP_DATABASE_URL": database_url}
    result = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert (result.exit_code, result.output.strip()) == (0, "audit chains intact")


def test_an_old_entry_altered_after_the_migration_is_still_detected(rt, monkeypatch):
    monkeypatch.setattr(audit, "CURRENT_VERSION", 1)
    _append(rt, [_event(outcome="denied", reason="not_in_care_team") for _ in range(2)])
    monkeypatch.undo()
    _sql(rt, "UPDATE audit_entries SET outcome = 'allowed' WHERE chain = :c AND seq = 2", c=ALICE)
    assert _verify(rt) == [BrokenLink(ALICE, 2, _ids(rt, ALICE)[2], "hash_mismatch")]
    # Passing it off as a version 2 entry does not help either.
    _sql(rt, "UPDATE audit_entries SET version = 2 WHERE chain = :c AND seq = 1", c=ALICE)
    assert _verify(rt)[0] == BrokenLink(ALICE, 1, _ids(rt, ALICE)[1], "hash_mismatch")


def test_an_overlong_justification_is_refused(rt):
    with rt.sessions() as session, pytest.raises(ValueError, match="justification"):
        append(session, audit_key(rt.hmac_secret), _event(justification="x" * (audit.MAX_JUSTIFICATION + 1)))
