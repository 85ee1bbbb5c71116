"""An insurer feed through real workers on Redis, PostgreSQL and S3: chunks in parallel, re-send safe."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import func, select

from pipeline.core.clock import paris_date
from pipeline.index.models import CareEvent, Outbox
from pipeline.runtime import Runtime
from pipeline.samples.feed import write_feed
from pipeline.status import feed_status, pending_chunks
from tests.distributed.conftest import ingest

pytestmark = pytest.mark.distributed


def _wait_chunks(rt: Runtime, feed_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            pending = pending_chunks(session, feed_id)
        if pending == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(feed_id)


def test_a_feed_is_processed_in_chunks_by_two_workers_and_a_resend_changes_nothing(settings, workers, tmp_path):
    chunked = settings.model_copy(update={"feed_chunk_lines": 700})
    workers.settings = chunked
    feed = tmp_path / "feed.csv"
    write_feed(feed, 5000, patients=300, seed=3, today=paris_date())
    tomorrow = (paris_date() + dt.timedelta(days=1)).isoformat()
    with feed.open("a", encoding="utf-8") as handle:  # two bad lines at the end: lines 5002 and 5003
        handle.write("BAD-1,185057512345699,2026-01-01,C,Consultation,1,Dr,physician,26.50,18.55,2026-01-02,\n")
        handle.write(f"BAD-2,{_a_nir()},{tomorrow},C,Consultation,1,Dr,physician,26.50,18.55,{tomorrow},\n")
    workers.start(processes=2, threads=1)
    first = ingest(chunked, feed, source="insurer:CNAM")
    rt = Runtime.from_settings(chunked)
    _wait_chunks(rt, first["batch"])
    with rt.sessions() as session:
        status = feed_status(session, first["batch"])
        stored = session.scalar(select(func.count()).select_from(CareEvent))
        notified = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.ref_id == first["batch"]))
        patients = session.scalar(select(func.count(func.distinct(CareEvent.patient_id))))
    assert stored == 5000 and status["counts"]["accepted"] == 5000
    assert [(r["line_number"], r["reason"]) for r in status["rejections"]] == [(5002, "invalid_ins"), (5003, "future_care_date")]
    assert notified == patients

    again = ingest(chunked, feed, source="insurer:CNAM")
    assert again["batch"] == first["batch"] and again["resumed"] is True
    time.sleep(1)
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CareEvent)) == 5000
        assert session.scalar(select(func.count()).select_from(Outbox)) == notified
    assert not [key for key in rt.store.list_keys("inbox/")]
    rt.close()


def _a_nir() -> str:
    from pipeline.core.identity import with_key

    return with_key("1850575123456")
