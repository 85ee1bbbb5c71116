"""The daily retention schedule (pipeline/retention.py): a failed run is tried again, and the next
day's run still happens."""

from __future__ import annotations

import pytest

from pipeline import retention
from pipeline.core.clock import paris_date


@pytest.fixture
def failing_once(monkeypatch):
    runs: list[str] = []
    real = retention.run_retention

    def run(rt, today):  # noqa: ANN001
        runs.append("run")
        if len(runs) == 1:
            raise RuntimeError("the object store refused a delete")
        return real(rt, today)

    monkeypatch.setattr(retention, "run_retention", run)
    return runs


def test_a_failed_run_is_tried_again_and_the_next_day_s_run_is_scheduled_once_it_succeeds(rt, failing_once):
    delays: list[int] = []
    assert retention.scheduled_retention(rt, delays.append) is None
    assert delays == [int(retention.RETRY_AFTER.total_seconds() * 1000)]
    assert not retention.run_recorded(rt, "retention", paris_date())

    assert retention.scheduled_retention(rt, delays.append) is not None  # the retry
    assert len(failing_once) == 2
    assert retention.run_recorded(rt, "retention", paris_date())
    assert 0 < delays[-1] <= 24 * 3600 * 1000  # the next 03:00


def test_a_second_copy_of_the_schedule_finds_the_day_done_and_dies_out(rt):
    delays: list[int] = []
    retention.scheduled_retention(rt, delays.append)
    assert retention.scheduled_retention(rt, delays.append) is None
    assert len(delays) == 1
