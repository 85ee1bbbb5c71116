"""Workers on Redis, PostgreSQL and S3 send the notifications themselves: one per patient per batch."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from pipeline.index.models import Document, Notification, Outbox
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.distributed.conftest import ingest, wait_until_final

pytestmark = pytest.mark.distributed


def test_running_workers_send_one_coalesced_message_per_patient_once_the_batch_is_done(settings, workers, tmp_path):
    quick = settings.model_copy(update={"notify_coalesce_seconds": 0, "notify_sweep_seconds": 0.5})
    workers.settings = quick
    workers.start(processes=2, threads=2)
    generate_samples(tmp_path / "batch", patients=3, documents=12, seed=8, bad=False)
    rt = Runtime.from_settings(quick)
    summary = ingest(quick, tmp_path / "batch")
    wait_until_final(rt, summary["batch"], timeout=120)
    with rt.sessions() as session:
        patients = set(session.scalars(select(Document.patient_id)))
    deadline, sent = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(sent) < len(patients):
        with rt.sessions() as session:
            sent = list(session.scalars(select(Notification).where(Notification.status == "sent")))
        time.sleep(0.25)
    assert sorted(n.patient_id for n in sent) == sorted(patients)  # one message each, by the workers' own passes
    with rt.sessions() as session:
        assert set(session.scalars(select(Outbox.status))) == {"composed"}
    lines = [json.loads(line) for line in quick.resolved_notify_log_file().read_text().splitlines()]
    assert sorted(line["idempotency_key"] for line in lines) == sorted(n.id for n in sent)  # each delivered once
    time.sleep(2)  # several more passes by both processes change nothing
    assert len(quick.resolved_notify_log_file().read_text().splitlines()) == len(sent)
    rt.close()
