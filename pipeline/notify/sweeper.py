"""A background thread that runs dispatch passes: every few seconds, and at once when woken.

Runs in API processes (woken right after an emergency access is recorded, so that message is never
held back) and in worker processes (deposits once their coalescing window has passed, retries, and
whatever a dead process left half done). Any number of sweepers may run: dispatch is safe to race.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import dramatiq

from pipeline.index.states import ChannelName
from pipeline.notify.channels import Channel, channels_from_settings
from pipeline.notify.dispatch import dispatch
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, rt: Runtime, channels: Mapping[ChannelName, Channel] | None = None, interval: float | None = None) -> None:
        self.rt = rt
        self.channels = channels if channels is not None else channels_from_settings(rt.settings)
        self.interval = interval if interval is not None else rt.settings.notify_sweep_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dmp-notify-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self.rt.wake_notifier = self.wake
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run a pass now (an urgent notification was just queued)."""
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                dispatch(self.rt, self.channels)
            except Exception as failure:  # the database may be away for a while: try again next pass
                log.warning("notification pass failed: %s", type(failure).__name__)


class SweeperMiddleware(dramatiq.Middleware):
    """Runs a Sweeper in each `dmp worker` process, beside the actors, for as long as the worker runs."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self.runtime = runtime
        self.sweeper: Sweeper | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.sweeper = Sweeper(self.runtime()).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
