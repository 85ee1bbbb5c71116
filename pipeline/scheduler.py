"""The periodic jobs' own process (`dmp scheduler`, the compose stack's `scheduler` service).

APScheduler fires two daily jobs, in Europe/Paris time: retention at 03:00 (RUN_AT,
pipeline/retention.py), then the whole-log audit verification at 04:00 (`dmp audit verify`, its
verdict recorded for the `dmp_audit_chain_broken` and `dmp_audit_verify_last_timestamp_seconds`
metrics and their alerts). Each firing goes through `DailyJob.run`, which keeps the rules of the
workers' schedule (`dmp retention schedule`): one run per Paris day, recorded in `job_runs` only once
it went through, so two schedulers never run a day twice. What this process adds is that nothing dies
silently:

- a failed run is tried again after RETRY_FIRST, then twice as long each time up to RETRY_MAX,
  until it succeeds; a retry that lands on the next day runs that day's job;
- the next day's run fires from the cron trigger whatever became of the day before;
- started after a job's hour on a day with no recorded run (down then, or a missed retry), it runs at once;
- each job's last-success gauge is read from `job_runs` when the process starts and set after each
  success, so an alert on its age sees a run that did not happen (the API's `/metrics` reads the
  same rows); each try is counted in the job's `…_runs_total{result}` (pipeline/core/metrics.py),
  and failures in a row in its `…_consecutive_failures`.

A broken audit chain is a verdict, recorded like an intact one (the alert DmpAuditChainBroken
follows), not a failed run: only a verification that could not finish is tried again.

`dmp scheduler` serves the metrics on `--metrics-port`.
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
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select

from pipeline.core.clock import PARIS, as_utc, paris_date
from pipeline.core.metrics import audit_verify_runs, retention_runs
from pipeline.core.outage import failure_code
from pipeline.index.states import JobName
from pipeline.operations.backlog import verify_audit_log
from pipeline.retention import RUN_AT, record_run, run_recorded, run_retention
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

RETRY_FIRST = dt.timedelta(minutes=1)
RETRY_MAX = dt.timedelta(hours=1)
AUDIT_VERIFY_AT = dt.time(4, 0)  # Europe/Paris: after retention, whose deletions it does not race


class Outcome(StrEnum):
    """What one firing of a daily job did."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ALREADY_DONE = "already_done"


# The `result` label of a job's runs counter for the outcomes that are runs.
_RESULTS = {Outcome.SUCCEEDED: "success", Outcome.FAILED: "failure"}


def _retention(rt: Runtime, today: dt.date) -> None:
    run_retention(rt, today)
    record_run(rt, JobName.RETENTION, today)  # False: another scheduler recorded it first, which is as good


def _audit_verify(rt: Runtime, today: dt.date) -> None:
    with rt.sessions() as session:
        broken = verify_audit_log(session, rt.audit_key, today)
    if broken:  # chain ids name patients: only the count is logged (`dmp audit verify` names them)
        log.error("audit verify for %s: %d broken chains (verdict recorded)", today, len(broken))


@dataclass(frozen=True)
class Task:
    """One daily job: what it runs, when, the `job_runs` names that record a day as done, its metrics' names."""

    job: JobName
    at: dt.time  # Europe/Paris
    work: Callable[[Runtime, dt.date], object]  # runs the day's job and records it under one of `recorded_as`
    recorded_as: tuple[JobName, ...]
    runs: Counter  # labelled by result (_RESULTS)
    last_success_metric: str
    failures_metric: str
    subject: str  # for the metrics' help text


RETENTION = Task(
    JobName.RETENTION, RUN_AT, lambda rt, today: _retention(rt, today), (JobName.RETENTION,), retention_runs,
    "dmp_retention_last_success_timestamp_seconds", "dmp_retention_consecutive_failures", "retention",
)  # fmt: skip
AUDIT_VERIFY = Task(
    JobName.AUDIT_VERIFY, AUDIT_VERIFY_AT, lambda rt, today: _audit_verify(rt, today),
    (JobName.AUDIT_VERIFY_OK, JobName.AUDIT_VERIFY_BROKEN), audit_verify_runs,
    "dmp_audit_verify_last_timestamp_seconds", "dmp_audit_verify_consecutive_failures", "the whole-log audit verification",
)  # fmt: skip
TASKS = (RETENTION, AUDIT_VERIFY)


@dataclass
class JobMetrics:
    """One job's gauges."""

    last_success: Gauge
    failures: Gauge


@dataclass
class SchedulerMetrics:
    """The scheduler's own gauges, in `registry` (`dmp scheduler`: the process's default registry)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.jobs: dict[JobName, JobMetrics] = {}
        for task in TASKS:
            self.jobs[task.job] = JobMetrics(
                Gauge(
                    task.last_success_metric,
                    f"When {task.subject} last ran to the end (Unix time; 0: never). Alert on its age.",
                    registry=self.registry,
                ),
                Gauge(task.failures_metric, f"Failed tries of {task.subject} since the last success.", registry=self.registry),
            )
            for result in _RESULTS.values():
                task.runs.labels(result)  # every series from the start, at 0


def retry_delay(failures: int) -> dt.timedelta:
    """The wait before the next try after `failures` failures in a row: RETRY_FIRST, doubled each time, at most RETRY_MAX."""
    doublings = min(max(0, failures - 1), 16)  # bounded: a long failing streak must not overflow timedelta
    return min(RETRY_FIRST * (1 << doublings), RETRY_MAX)


def last_success(rt: Runtime, recorded_as: tuple[JobName, ...]) -> dt.datetime | None:
    """When a job last ran to the end (its latest `job_runs` row under one of `recorded_as`), or None if it never did."""
    from pipeline.index.models import JobRun

    with rt.sessions() as session:
        latest = session.scalar(select(func.max(JobRun.started_at)).where(JobRun.job.in_(recorded_as)))
    return as_utc(latest) if latest is not None else None


def day_done(rt: Runtime, task: Task, day: dt.date) -> bool:
    """Whether `task` already ran to the end for `day`."""
    return any(run_recorded(rt, name, day) for name in task.recorded_as)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class DailyJob:
    """One job run once per Paris day, retried with backoff until it succeeds (module docstring)."""

    rt: Runtime
    task: Task
    scheduler: BaseScheduler
    metrics: JobMetrics
    clock: Callable[[], dt.datetime] = _utc_now
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def job(self) -> JobName:
        return self.task.job

    @property
    def retry_id(self) -> str:
        return f"{self.job}-retry"

    def run(self) -> Outcome:
        """Run today's job unless it is recorded; on failure schedule the next try."""
        with self._lock:  # the cron firing and a retry must not overlap
            outcome = self._run_once()
        if outcome in _RESULTS:
            self.task.runs.labels(_RESULTS[outcome]).inc()
        return outcome

    def _run_once(self) -> Outcome:
        today = paris_date(self.clock())
        if day_done(self.rt, self.task, today):
            return Outcome.ALREADY_DONE
        try:
            self.task.work(self.rt, today)
        except Exception as failure:  # any failure: the run is tried again, and the reason logged as a code
            self.failures += 1
            delay = retry_delay(self.failures)
            self.scheduler.add_job(self.run, "date", run_date=self.clock() + delay, id=self.retry_id, replace_existing=True)
            self.metrics.failures.set(self.failures)
            code = failure_code(failure)
            log.error("%s run for %s failed (%s, %d in a row); tried again in %s", self.job, today, code, self.failures, delay)
            return Outcome.FAILED
        self.failures = 0
        self.metrics.failures.set(0)
        self.metrics.last_success.set(self.clock().timestamp())
        log.info("%s run for %s done", self.job, today)
        return Outcome.SUCCEEDED


def schedule_daily(
    rt: Runtime, task: Task, scheduler: BaseScheduler, metrics: SchedulerMetrics, clock: Callable[[], dt.datetime] = _utc_now
) -> DailyJob:
    """Add `task` to `scheduler` (cron at its hour, Europe/Paris, plus an immediate run when today's is
    past its hour and not recorded) and set its last-success gauge from the index."""
    gauges = metrics.jobs[task.job]
    daily = DailyJob(rt, task, scheduler, gauges, clock)
    previous = last_success(rt, task.recorded_as)
    gauges.last_success.set(previous.timestamp() if previous else 0)
    trigger = CronTrigger(hour=task.at.hour, minute=task.at.minute, timezone=PARIS)
    # misfire_grace_time: a firing delayed by a busy or paused process still runs (the day check makes it safe).
    scheduler.add_job(daily.run, trigger, id=str(task.job), coalesce=True, misfire_grace_time=6 * 3600, max_instances=1)
    now = clock()
    local = now.astimezone(PARIS)
    if local.time() >= task.at and not day_done(rt, task, local.date()):
        scheduler.add_job(daily.run, "date", run_date=now, id=daily.retry_id, replace_existing=True, misfire_grace_time=None)
    return daily


def schedule_retention(
    rt: Runtime, scheduler: BaseScheduler, metrics: SchedulerMetrics, clock: Callable[[], dt.datetime] = _utc_now
) -> DailyJob:
    """Add daily retention (03:00 Europe/Paris) to `scheduler`."""
    return schedule_daily(rt, RETENTION, scheduler, metrics, clock)


def schedule_all(
    rt: Runtime, scheduler: BaseScheduler, metrics: SchedulerMetrics, clock: Callable[[], dt.datetime] = _utc_now
) -> list[DailyJob]:
    """Add every daily job (TASKS, in the order they run) to `scheduler`."""
    return [schedule_daily(rt, task, scheduler, metrics, clock) for task in TASKS]


def new_scheduler() -> BlockingScheduler:
    """A blocking scheduler running one job at a time (the jobs' short transactions need no more, and
    the audit verification does not run beside retention)."""
    return BlockingScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=PARIS)
