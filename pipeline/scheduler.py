"""The periodic jobs' own process (`dmp scheduler`, the compose stack's `scheduler` service).

APScheduler fires retention daily at 03:00 Europe/Paris (RUN_AT, pipeline/retention.py). Each firing
goes through `DailyJob.run`, which keeps the rules of the workers' schedule (`dmp retention
schedule`): one run per Paris day, recorded in `job_runs` only once it went through, so two
schedulers never run a day twice. What this process adds is that nothing dies silently:

- a failed run is tried again after RETRY_FIRST, then twice as long each time up to RETRY_MAX,
  until it succeeds; a retry that lands on the next day runs that day's retention;
- the next day's run fires from the cron trigger whatever became of the day before;
- started after 03:00 on a day with no recorded run (down at 03:00, or a missed retry), it runs at once;
- `dmp_retention_last_success_timestamp_seconds` is read from `job_runs` when the process starts
  and set after each success, so an alert on its age sees a run that did not happen (the API's
  `/metrics` reads the same row); each try is counted in `dmp_retention_runs_total{result}`
  (pipeline/core/metrics.py), and failures in a row in `dmp_retention_consecutive_failures`.

`dmp scheduler` serves them on `--metrics-port`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select

from pipeline.core.clock import PARIS, as_utc, paris_date
from pipeline.core.metrics import retention_runs
from pipeline.core.outage import failure_code
from pipeline.retention import RUN_AT, record_run, resume_delay_ms, run_recorded, run_retention
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

RETRY_FIRST = dt.timedelta(minutes=1)
RETRY_MAX = dt.timedelta(hours=1)


class Job(StrEnum):
    """The scheduled jobs, by the name `job_runs` records them under."""

    RETENTION = "retention"


class Outcome(StrEnum):
    """What one firing of a daily job did."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ALREADY_DONE = "already_done"


# The `result` of dmp_retention_runs_total for the outcomes that are runs.
_RESULTS = {Outcome.SUCCEEDED: "success", Outcome.FAILED: "failure"}


@dataclass
class SchedulerMetrics:
    """The scheduler's own gauges, in `registry` (`dmp scheduler`: the process's default registry)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.last_success = Gauge(
            "dmp_retention_last_success_timestamp_seconds",
            "When retention last ran to the end (Unix time; 0: never). Alert on its age.",
            registry=self.registry,
        )
        self.failures = Gauge(
            "dmp_retention_consecutive_failures", "Failed retention tries since the last success.", registry=self.registry
        )
        for result in _RESULTS.values():
            retention_runs.labels(result)  # every series from the start, at 0


def retry_delay(failures: int) -> dt.timedelta:
    """The wait before the next try after `failures` failures in a row: RETRY_FIRST, doubled each time, at most RETRY_MAX."""
    return min(RETRY_FIRST * 2 ** max(0, failures - 1), RETRY_MAX)


def last_success(rt: Runtime, job: Job) -> dt.datetime | None:
    """When `job` last ran to the end (its latest `job_runs` row), or None if it never did."""
    from pipeline.index.models import JobRun

    with rt.sessions() as session:
        latest = session.scalar(select(func.max(JobRun.started_at)).where(JobRun.job == job))
    return as_utc(latest) if latest is not None else None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class DailyJob:
    """One job run once per Paris day, retried with backoff until it succeeds (module docstring)."""

    rt: Runtime
    job: Job
    work: Callable[[Runtime, dt.date], object]
    scheduler: BaseScheduler
    metrics: SchedulerMetrics
    clock: Callable[[], dt.datetime] = _utc_now
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def retry_id(self) -> str:
        return f"{self.job}-retry"

    def run(self) -> Outcome:
        """Run today's job unless it is recorded; on failure schedule the next try."""
        with self._lock:  # the cron firing and a retry must not overlap
            outcome = self._run_once()
        if outcome in _RESULTS:
            retention_runs.labels(_RESULTS[outcome]).inc()
        return outcome

    def _run_once(self) -> Outcome:
        today = paris_date(self.clock())
        if run_recorded(self.rt, self.job, today):
            return Outcome.ALREADY_DONE
        try:
            self.work(self.rt, today)
        except Exception as failure:  # any failure: the run is tried again, and the reason logged as a code
            self.failures += 1
            delay = retry_delay(self.failures)
            self.scheduler.add_job(self.run, "date", run_date=self.clock() + delay, id=self.retry_id, replace_existing=True)
            self.metrics.failures.set(self.failures)
            code = failure_code(failure)
            log.error("%s run for %s failed (%s, %d in a row); tried again in %s", self.job, today, code, self.failures, delay)
            return Outcome.FAILED
        record_run(self.rt, self.job, today)  # False: another scheduler recorded it first, which is as good
        self.failures = 0
        self.metrics.failures.set(0)
        self.metrics.last_success.set(self.clock().timestamp())
        log.info("%s run for %s done", self.job, today)
        return Outcome.SUCCEEDED


def schedule_retention(
    rt: Runtime, scheduler: BaseScheduler, metrics: SchedulerMetrics, clock: Callable[[], dt.datetime] = _utc_now
) -> DailyJob:
    """Add daily retention to `scheduler` (cron at RUN_AT Europe/Paris, plus an immediate run when
    today's is due and not recorded) and set the last-success gauge from the index."""
    daily = DailyJob(rt, Job.RETENTION, lambda runtime, today: run_retention(runtime, today), scheduler, metrics, clock)
    previous = last_success(rt, Job.RETENTION)
    metrics.last_success.set(previous.timestamp() if previous else 0)
    trigger = CronTrigger(hour=RUN_AT.hour, minute=RUN_AT.minute, timezone=PARIS)
    # misfire_grace_time: a firing delayed by a busy or paused process still runs (the day check makes it safe).
    scheduler.add_job(daily.run, trigger, id=str(Job.RETENTION), coalesce=True, misfire_grace_time=6 * 3600, max_instances=1)
    now = clock()
    if resume_delay_ms(rt, now) == 0:
        scheduler.add_job(daily.run, "date", run_date=now, id=daily.retry_id, replace_existing=True, misfire_grace_time=None)
    return daily


def new_scheduler() -> BlockingScheduler:
    """A blocking scheduler running one job at a time (retention's short transactions need no more)."""
    return BlockingScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=PARIS)
