"""What a worker host shows an operator: JSON log lines naming the batch, and the workers' metrics."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from infra.services import free_port
from pipeline.runtime import Runtime
from tests.distributed.conftest import ingest, wait_until_final

pytestmark = pytest.mark.distributed


@pytest.fixture
def small_batch(tmp_path):
    from pipeline.samples import generate_samples

    generate_samples(tmp_path / "batch", patients=3, documents=20, seed=4)
    return tmp_path / "batch"


def _run_batch(settings, workers, batch) -> str:  # type: ignore[no-untyped-def]
    workers.start(processes=2, threads=2)
    rt = Runtime.from_settings(settings)
    try:
        result = ingest(settings, batch)
        wait_until_final(rt, result["batch"], timeout=120)
    finally:
        rt.close()
    return result["batch"]


def test_a_batchs_worker_log_lines_are_json_carrying_the_batch_id_and_no_ins(settings, workers, small_batch):
    workers.settings = settings.model_copy(update={"log_format": "json"})
    batch_id = _run_batch(settings, workers, small_batch)
    workers.stop()
    lines = [json.loads(line) for line in workers.log.read_text().splitlines() if line.strip()]
    of_batch = [line for line in lines if line.get("batch_id") == batch_id]
    assert len({line["item_id"] for line in of_batch if "item_id" in line}) >= 15  # one per processed item at least
    ins_values = {row["patient_ins"] for row in _manifest_rows(small_batch) if row["patient_ins"]}
    logged = workers.log.read_text()
    assert ins_values and not [ins for ins in ins_values if ins in logged]


def _manifest_rows(batch):  # type: ignore[no-untyped-def]
    import csv

    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_workers_serve_their_counters_on_the_metrics_port(settings, workers, small_batch):
    port = free_port()
    workers.settings = settings.model_copy(update={"worker_metrics_port": port})
    _run_batch(settings, workers, small_batch)
    deadline = time.monotonic() + 10
    while True:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    indexed = [line for line in text.splitlines() if line.startswith('dmp_documents_indexed_total{source_kind="hospital"}')]
    assert indexed and float(indexed[0].split()[-1]) > 0
    assert "dmp_stage_duration_seconds_count" in text
