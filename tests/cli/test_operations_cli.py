"""The operator's commands end to end in embedded mode: each prints JSON with --json."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.core.settings import Settings
from pipeline.documents.process import mark_retries_exhausted
from pipeline.index.models import BatchItem
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime
from tests.conftest import read_expected


def _dmp(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    out = capsys.readouterr().out
    assert stopped.value.code == 0, out
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def home(monkeypatch, tmp_path, sample_batch):
    """An embedded home holding the sample batch taken in (nothing processed) and one good item set
    aside `retries_exhausted`; yields (runtime, that item's id)."""
    monkeypatch.setenv("DMP_HOME", str(tmp_path / "home"))
    rt = Runtime.from_settings(Settings(), prepare=True)
    sent: list[str] = []
    receive_batch(rt, sample_batch, "hospital:CHU-CLI", sent.append)
    good = {f for f, row in read_expected(sample_batch).items() if row["expected_state"] == "indexed"}
    with rt.sessions() as session:
        item_id = next(i for i in sent if session.get(BatchItem, i).file in good)
    mark_retries_exhausted(rt, item_id)
    yield rt, item_id
    rt.close()


def test_dmp_requeue_processes_again_an_item_that_ended_retries_exhausted(capsys, home):
    rt, item_id = home
    assert _dmp(capsys, "items", "--reason", "retries_exhausted", "--json")["rejected"][0]["item"] == item_id
    assert _dmp(capsys, "requeue", "--json")["requeued"] == [item_id]
    with rt.sessions() as session:
        assert session.get(BatchItem, item_id).state == "indexed"


def test_dmp_batches_lists_the_batch_in_progress(capsys, home):
    rows = _dmp(capsys, "batches", "--state", "in_progress", "--json")["batches"]
    assert [(row["kind"], row["source"]) for row in rows] == [("batch", "hospital:CHU-CLI")]


def test_dmp_review_and_notify_failed_answer_json_on_an_empty_queue(capsys, home):
    assert _dmp(capsys, "review", "--json") == {"review": []}
    assert _dmp(capsys, "notify", "failed", "--json") == {"failed": [], "retried": []}
