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
