"""The actors on dramatiq's in-process broker: outages are waited out, not turned into rejections."""

from __future__ import annotations

import dramatiq
import pytest
from sqlalchemy import select

from pipeline.core.reasons import Transient
from pipeline.index.models import BatchItem
from pipeline.ingest.intake import receive_batch
from pipeline.workers.wiring import wire

pytestmark = pytest.mark.slow  # waits out a storage outage through every retry


def test_a_storage_outage_longer_than_every_retry_rejects_no_document(embedded_settings, tmp_path):
    from pipeline.samples import generate_samples

    batch = tmp_path / "batch"
    generate_samples(batch, patients=2, documents=6, seed=4, bad=False)
    # One retry within 50 ms: the outage below outlasts the whole budget.
    settings = embedded_settings.model_copy(update={"max_retries": 1, "min_backoff_ms": 5, "max_backoff_ms": 50})
    wiring = wire(settings, prepare=True)
    rt = wiring.runtime()
    receive_batch(rt, batch, "hospital:T", wiring.send_item)
    failures = iter(range(30))  # the store refuses its next 30 writes: several per document
    put = rt.store.put

    def put_once_back(key, source):  # noqa: ANN001
        if next(failures, None) is not None:
            raise Transient("storage_put_failed")
        return put(key, source)

    rt.store.put = put_once_back  # type: ignore[method-assign]
    worker = dramatiq.Worker(wiring.broker, worker_threads=2)
    worker.start()
    try:
        wiring.broker.join(settings.queue_name, timeout=60_000)
    finally:
        worker.stop()
        wiring.close()
    with rt.sessions() as session:
        states = {(item.state, item.reason) for item in session.scalars(select(BatchItem))}
    assert states == {("indexed", None)}


def test_a_pack_whose_one_document_keeps_failing_ends_that_one_alone_after_the_retries(embedded_settings, tmp_path, monkeypatch):
    from pipeline.documents import batching
    from pipeline.ingest import packs
    from pipeline.samples import generate_samples

    batch = tmp_path / "batch"
    generate_samples(batch, patients=2, documents=6, seed=4, bad=False)
    monkeypatch.setattr(packs, "MIN_MESSAGES", 1)  # the six documents in one pack, one message
    settings = embedded_settings.model_copy(update={"max_retries": 1, "min_backoff_ms": 5, "max_backoff_ms": 50})
    wiring = wire(settings, prepare=True)
    rt = wiring.runtime()
    messages: list[list[str]] = []
    receive_batch(rt, batch, "hospital:T", wiring.send_item, send_many=lambda ids: (messages.append(ids), wiring.send_items(ids)))
    (message,) = messages
    seal_document = batching.seal_document

    def broken_for_one(rt, item, *args):  # noqa: ANN001, ANN202
        if item.id == message[2]:
            raise RuntimeError("a bug met by this document only")
        return seal_document(rt, item, *args)

    monkeypatch.setattr(batching, "seal_document", broken_for_one)
    worker = dramatiq.Worker(wiring.broker, worker_threads=1)
    worker.start()
    try:
        wiring.broker.join(settings.queue_name, timeout=60_000, fail_fast=False)  # the message ends dead-lettered
    finally:
        worker.stop()
        wiring.close()
    with rt.sessions() as session:
        states = {item.id: (item.state, item.reason) for item in session.scalars(select(BatchItem))}
    assert states.pop(message[2]) == ("rejected", "retries_exhausted")
    assert set(states.values()) == {("indexed", None)}
