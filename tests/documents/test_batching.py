"""Micro-batches: the items of one intake pack processed as one message, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.access.audit import entries_for, verify
from pipeline.core.identity import with_key
from pipeline.core.inbox import PACK_PREFIX
from pipeline.core.outage import Interrupted, Service
from pipeline.core.reasons import Transient
from pipeline.documents import batching
from pipeline.documents.batching import process_items
from pipeline.index.models import BatchItem, Document, Outbox
from pipeline.ingest import packs
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime

HEADER = "file,patient_ins,source_document_id,title,service_date,author_id,author_profession\n"


def _batch(folder: Path, rows: list[tuple[str, str]]) -> Path:
    """A batch of text documents, (name, INS) each, two patients' worth."""
    folder.mkdir()
    lines = [f"{name}.txt,{ins},{name.upper()},Compte rendu,2025-01-02,10001234567,physician\n" for name, ins in rows]
    (folder / "manifest.csv").write_text(HEADER + "".join(lines))
    for name, _ in rows:
        (folder / f"{name}.txt").write_text(f"Compte rendu {name}: resultat normal.\n")
    return folder


ANNE, BRUNO = with_key("2850575123456"), with_key("1790275123456")


@pytest.fixture(autouse=True)
def one_pack_per_batch(monkeypatch):
    monkeypatch.setattr(packs, "MIN_MESSAGES", 1)  # these batches are small: one pack holds each


@pytest.fixture
def packed(rt: Runtime, tmp_path: Path) -> tuple[Runtime, list[list[str]]]:
    rows = [("a1", ANNE), ("b1", BRUNO), ("a2", ANNE), ("bad", "123"), ("b2", BRUNO)]
    messages: list[list[str]] = []
    receive_batch(rt, _batch(tmp_path / "batch", rows), "hospital:T", lambda item: messages.append([item]), send_many=messages.append)
    return rt, messages


def _items(rt: Runtime) -> dict[str, BatchItem]:
    with rt.sessions() as session:
        return {item.file: item for item in session.scalars(select(BatchItem))}


def test_the_intake_stores_small_documents_as_one_pack_sent_as_one_message(packed):
    rt, messages = packed
    items = _items(rt)
    assert [sorted(m) for m in messages] == [sorted(item.id for item in items.values())]
    (key,) = list(rt.store.list_keys("inbox/"))
    assert key.startswith(PACK_PREFIX) and {(i.inbox_key, i.inbox_member) for i in items.values()} == {(key, i.id) for i in items.values()}


def test_a_pack_s_items_are_processed_as_one_message_and_the_pack_is_deleted(packed):
    rt, (message,) = packed
    outcomes = process_items(rt, message)
    items = _items(rt)
    assert {items[name].file: outcomes[items[name].id] for name in items} == {
        "a1.txt": "indexed", "a2.txt": "indexed", "b1.txt": "indexed", "b2.txt": "indexed", "bad.txt": "rejected",
    }  # fmt: skip
    assert items["bad.txt"].reason == "invalid_ins"  # rejected alone: its neighbours are indexed
    assert not list(rt.store.list_keys("inbox/"))
    assert all(item.lease_until is None for item in items.values())
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Outbox)) == 2  # one notice per patient
        patients = set(session.scalars(select(Document.patient_id)))
        for patient in patients:
            deposits = [e for e in entries_for(session, patient) if e.action == "deposit"]
            assert len(deposits) == 2 and [e.seq for e in deposits] == [1, 2]
        assert verify(session, rt.audit_key) == []


def test_running_a_pack_s_message_twice_changes_nothing(packed):
    rt, (message,) = packed
    process_items(rt, message)
    with rt.sessions() as session:
        before = session.scalar(select(func.count()).select_from(Document)), sorted(rt.store.list_keys())
    assert set(process_items(rt, message).values()) == {"final"}
    with rt.sessions() as session:
        assert (session.scalar(select(func.count()).select_from(Document)), sorted(rt.store.list_keys())) == before


def test_a_document_that_fails_in_a_micro_batch_is_released_alone_and_its_neighbours_commit(packed, monkeypatch):
    rt, (message,) = packed
    failing = _items(rt)["a2.txt"].id
    seal_document = batching.seal_document

    def broken_for_one(rt, item, *args):  # noqa: ANN001, ANN202
        if item.id == failing:
            raise RuntimeError("a bug met by this document only")
        return seal_document(rt, item, *args)

    monkeypatch.setattr(batching, "seal_document", broken_for_one)
    with pytest.raises(RuntimeError):
        process_items(rt, message)
    items = _items(rt)
    assert (items["a2.txt"].state, items["a2.txt"].crashes) == ("queued", 1)
    assert {items[name].state for name in ("a1.txt", "b1.txt", "b2.txt")} == {"indexed"}
    assert [key for key in rt.store.list_keys("docs/") if failing in key or items["a2.txt"].document_id in key] == []
    monkeypatch.undo()
    assert process_items(rt, message)[failing] == "indexed"  # the message's retry: the others are final
    assert not list(rt.store.list_keys("inbox/"))


def test_an_outage_interrupts_the_whole_micro_batch_and_its_retry_takes_every_claim_back(packed, monkeypatch):
    rt, (message,) = packed

    def unavailable(key, source):  # noqa: ANN001, ARG001
        raise Transient("storage_put_failed")

    monkeypatch.setattr(rt.store, "put", unavailable)
    with pytest.raises(Interrupted) as stopped:
        process_items(rt, message)
    assert stopped.value.service == Service.STORAGE and isinstance(stopped.value.attempt, dict)
    assert {(item.state, item.crashes) for item in _items(rt).values() if item.file != "bad.txt"} == {("queued", 0)}
    monkeypatch.undo()
    process_items(rt, message, resuming=stopped.value.attempt)
    assert {(item.state, item.crashes) for item in _items(rt).values()} == {("indexed", 0), ("rejected", 0)}


def test_a_small_batch_is_spread_over_several_packs(rt, tmp_path, monkeypatch):
    monkeypatch.setattr(packs, "MIN_MESSAGES", 2)
    messages: list[list[str]] = []
    rows = [(f"d{n}", ANNE) for n in range(5)]
    receive_batch(rt, _batch(tmp_path / "batch", rows), "hospital:T", lambda item: messages.append([item]), send_many=messages.append)
    assert [len(message) for message in messages] == [2, 2, 1]
    assert len(list(rt.store.list_keys(PACK_PREFIX))) == 3


def test_an_intake_that_died_before_storing_a_pack_packs_its_items_again_when_run_again(rt, tmp_path):
    batch = _batch(tmp_path / "batch", [("a1", ANNE), ("b1", BRUNO)])
    first: list[list[str]] = []
    receive_batch(rt, batch, "hospital:T", lambda item: first.append([item]), send_many=first.append)
    (pack,) = list(rt.store.list_keys("inbox/"))
    rt.store.delete(pack)  # as if the intake died after moving the rows to the pack, before storing it
    again: list[list[str]] = []
    result = receive_batch(rt, batch, "hospital:T", lambda item: again.append([item]), send_many=again.append)
    assert result.resumed and sorted(sum(again, [])) == sorted(sum(first, []))
    (repacked,) = list(rt.store.list_keys("inbox/"))
    assert repacked != pack
    assert set(process_items(rt, again[0]).values()) == {"indexed"}
