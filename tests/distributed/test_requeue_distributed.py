"""`dmp requeue` on real services: the item goes back to the workers through Redis."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.documents.process import mark_retries_exhausted
from pipeline.index.models import BatchItem
from pipeline.runtime import Runtime
from tests.distributed.conftest import dmp, ingest, wait_until_final

pytestmark = pytest.mark.distributed


def test_an_item_forced_to_retries_exhausted_ends_indexed_after_dmp_requeue(settings, workers, tmp_path):
    from pipeline.samples import generate_samples

    generate_samples(tmp_path / "batch", patients=2, documents=6, seed=8, bad=False)
    rt = Runtime.from_settings(settings)
    try:
        batch_id = ingest(settings, tmp_path / "batch")["batch"]  # no worker yet: every item waits in Redis
        with rt.sessions() as session:
            item_id = session.query(BatchItem.id).filter(BatchItem.batch_id == batch_id).first()[0]
        mark_retries_exhausted(rt, item_id)
        workers.start(processes=1, threads=2)
        wait_until_final(rt, batch_id, timeout=120)
        assert json.loads(dmp(settings, "requeue", "--json"))["requeued"] == [item_id]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with rt.sessions() as session:
                if session.get(BatchItem, item_id).state == "indexed":
                    break
            time.sleep(0.25)
        with rt.sessions() as session:
            assert session.get(BatchItem, item_id).state == "indexed"
    finally:
        rt.close()
