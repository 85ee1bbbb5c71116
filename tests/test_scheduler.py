"""`dmp scheduler` (pipeline/scheduler.py): retention and the whole-log audit verification fired daily
by APScheduler, a failed run retried with backoff, the next day's run still happening, and a missed
run visible in metrics.

The scheduler is started paused (it never fires by itself): each test fires the jobs it registered
by hand, on a clock the test moves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import REGISTRY, CollectorRegistry

from pipeline import scheduler as periodic
from pipeline.core.clock import PARIS
from pipeline.index.states import JobName
from pipeline.operations.scrape import ScrapeCollector
from pipeline.retention import record_run, run_recorded
from pipeline.scheduler import Outcome, SchedulerMetrics, retry_delay, schedule_all, schedule_retention

# 03:00 in Paris on 10 March 2026 (CET, UTC+1).
FIRST_RUN = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)
FIRST_VERIFY = FIRST_RUN + dt.timedelta(hours=1)


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def jobs() -> Iterator[BackgroundScheduler]:
    paused = BackgroundScheduler(timezone=PARIS)
    paused.start(paused=True)
    yield paused
    paused.shutdown(wait=False)


@pytest.fixture
def failing_once(monkeypatch) -> list[dt.date]:
    days: list[dt.date] = []

    def run(rt, today):  # noqa: ANN001
        days.append(today)
        if len(days) == 1:
            raise RuntimeError("the object store refused a delete")

    monkeypatch.setattr(periodic, "run_retention", run)
    return days


def test_a_run_that_fails_once_is_retried_and_the_next_day_s_run_still_happens(rt, jobs, failing_once):
    clock = Clock(FIRST_RUN)
    schedule_retention(rt, jobs, SchedulerMetrics(), clock)
    daily = jobs.get_job("retention")

    assert daily.func() == Outcome.FAILED
    retry = jobs.get_job("retention-retry")
    assert retry.trigger.run_date == FIRST_RUN + periodic.RETRY_FIRST
    clock.now = retry.trigger.run_date
    assert retry.func() == Outcome.SUCCEEDED
    assert run_recorded(rt, "retention", dt.date(2026, 3, 10))

    clock.now = daily.trigger.get_next_fire_time(None, clock.now)
    assert clock.now == dt.datetime(2026, 3, 11, 3, 0, tzinfo=PARIS)
    assert daily.func() == Outcome.SUCCEEDED
    assert failing_once == [dt.date(2026, 3, 10), dt.date(2026, 3, 10), dt.date(2026, 3, 11)]
    assert run_recorded(rt, "retention", dt.date(2026, 3, 11))


def test_a_failed_run_leaves_the_last_success_where_it_was_and_counts_the_failure(rt, jobs, failing_once):
    metrics = SchedulerMetrics()
    schedule_retention(rt, jobs, metrics, Clock(FIRST_RUN))
    failures_before = REGISTRY.get_sample_value("dmp_retention_runs_total", {"result": "failure"})
    jobs.get_job("retention").func()
    assert metrics.registry.get_sample_value("dmp_retention_last_success_timestamp_seconds") == 0
    assert REGISTRY.get_sample_value("dmp_retention_runs_total", {"result": "failure"}) == failures_before + 1
    assert metrics.registry.get_sample_value("dmp_retention_consecutive_failures") == 1


def test_a_day_already_recorded_by_another_scheduler_is_not_run_again(rt, jobs, failing_once):
    record_run(rt, "retention", dt.date(2026, 3, 10))
    schedule_retention(rt, jobs, SchedulerMetrics(), Clock(FIRST_RUN))
    assert jobs.get_job("retention").func() == Outcome.ALREADY_DONE
    assert failing_once == []


def test_a_scheduler_started_after_3am_with_today_s_run_missing_runs_it_at_once(rt, jobs):
    started = FIRST_RUN + dt.timedelta(hours=5)
    schedule_retention(rt, jobs, SchedulerMetrics(), Clock(started))
    assert jobs.get_job("retention-retry").trigger.run_date == started


def test_a_restarted_scheduler_reports_the_last_success_recorded_in_the_index(rt, jobs):
    record_run(rt, "retention", dt.date(2026, 3, 9))
    metrics = SchedulerMetrics()
    schedule_retention(rt, jobs, metrics, Clock(FIRST_RUN))
    assert metrics.registry.get_sample_value("dmp_retention_last_success_timestamp_seconds") > 0


def test_retries_wait_twice_as_long_each_time_up_to_an_hour():
    assert [retry_delay(n) for n in (1, 2, 3)] == [periodic.RETRY_FIRST, 2 * periodic.RETRY_FIRST, 4 * periodic.RETRY_FIRST]
    assert retry_delay(30) == periodic.RETRY_MAX


@pytest.fixture
def verify_failing_once(monkeypatch) -> list[dt.date]:
    days: list[dt.date] = []
    real = periodic.verify_audit_log

    def verify(session, key, today):  # noqa: ANN001
        days.append(today)
        if len(days) == 1:
            raise ConnectionError("the database did not answer")
        return real(session, key, today)

    monkeypatch.setattr(periodic, "verify_audit_log", verify)
    return days


def test_the_audit_log_is_verified_daily_at_4am_after_retention(rt, jobs):
    schedule_all(rt, jobs, SchedulerMetrics(), Clock(FIRST_RUN - dt.timedelta(hours=1)))
    verify = jobs.get_job("audit_verify")
    assert verify.trigger.get_next_fire_time(None, FIRST_RUN) == dt.datetime(2026, 3, 10, 4, 0, tzinfo=PARIS)
    after_first = FIRST_VERIFY + dt.timedelta(seconds=1)
    assert verify.trigger.get_next_fire_time(None, after_first) == dt.datetime(2026, 3, 11, 4, 0, tzinfo=PARIS)


def test_a_verification_that_fails_once_is_retried_and_the_next_day_s_still_happens(rt, jobs, verify_failing_once):
    clock = Clock(FIRST_VERIFY)
    schedule_all(rt, jobs, SchedulerMetrics(), clock)
    daily = jobs.get_job("audit_verify")

    assert daily.func() == Outcome.FAILED
    retry = jobs.get_job("audit_verify-retry")
    clock.now = retry.trigger.run_date
    assert retry.func() == Outcome.SUCCEEDED
    assert run_recorded(rt, JobName.AUDIT_VERIFY_OK, dt.date(2026, 3, 10))

    clock.now = daily.trigger.get_next_fire_time(None, clock.now)
    assert daily.func() == Outcome.SUCCEEDED
    assert verify_failing_once == [dt.date(2026, 3, 10), dt.date(2026, 3, 10), dt.date(2026, 3, 11)]
    assert run_recorded(rt, JobName.AUDIT_VERIFY_OK, dt.date(2026, 3, 11))


def test_a_scheduled_verification_moves_the_metric_of_the_last_verdict(rt, jobs):
    scraped = CollectorRegistry()
    scraped.register(ScrapeCollector(rt, None))  # what the API's /metrics reads from the index

    def last_verified() -> float | None:
        return scraped.get_sample_value("dmp_audit_verify_last_timestamp_seconds")

    assert last_verified() == 0
    schedule_all(rt, jobs, SchedulerMetrics(), Clock(FIRST_VERIFY))
    assert jobs.get_job("audit_verify").func() == Outcome.SUCCEEDED
    assert last_verified() > 0


def test_a_broken_chain_is_a_verdict_recorded_not_a_run_to_retry(rt, jobs, monkeypatch):
    from pipeline.operations import backlog

    monkeypatch.setattr(backlog, "verify", lambda session, key: [object()])
    schedule_all(rt, jobs, SchedulerMetrics(), Clock(FIRST_VERIFY))
    assert jobs.get_job("audit_verify").func() == Outcome.SUCCEEDED
    assert run_recorded(rt, JobName.AUDIT_VERIFY_BROKEN, dt.date(2026, 3, 10))
