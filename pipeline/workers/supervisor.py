"""`dmp worker`: a parent process that keeps N worker processes running.

dramatiq's own command line stops every worker process and exits as soon as one dies, so a single
out-of-memory kill would stop all processing on the host. Here each worker process is a child of
its own (`python -m pipeline.workers.supervisor --child`): a dramatiq Worker over the broker and
actors of `pipeline.workers.entry`. The parent replaces a child that dies and says so in the log; a
child that dies soon after its start again and again is restarted after a growing delay (up to a
minute) instead of in a tight loop. SIGTERM or SIGINT stops the children (each finishes or hands
back its messages) and then the parent. What a dead child held comes back through the recovery
sweep (recovery.py) within a claim lease.
"""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dramatiq

log = logging.getLogger("pipeline.workers.supervisor")
STABLE_AFTER = 10.0  # a child that lived this long died of something else than its start: replaced at once
MAX_RESTART_DELAY = 60.0
STOP_TIMEOUT = 60.0  # seconds a stopping child gets to finish what it holds


@dataclass
class Slot:
    """One of the N worker processes: the current child in it and its restart delay."""

    number: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = 0.0
    restart_at: float | None = None
    restarts: int = field(default=0)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(self, processes: int, command: list[str]) -> None:
        self.slots = [Slot(number) for number in range(1, processes + 1)]
        self.command = command
        self.stopping = threading.Event()

    def _spawn(self, slot: Slot) -> None:
        slot.process = subprocess.Popen(self.command)
        slot.started, slot.restart_at = time.monotonic(), None
        log.info("worker process %d started (pid %d)", slot.number, slot.process.pid)

    def _check(self, slot: Slot) -> None:
        now = time.monotonic()
        if slot.restart_at is not None:
            if now >= slot.restart_at:
                self._spawn(slot)
            return
        assert slot.process is not None
        code = slot.process.poll()
        if code is None:
            return
        lived = now - slot.started
        slot.delay = 0.0 if lived >= STABLE_AFTER else min(MAX_RESTART_DELAY, max(1.0, slot.delay * 2))
        slot.restarts += 1
        log.warning(
            "worker process %d (pid %d) died (%s) after %.0f s; starting a new one%s",
            slot.number,
            slot.process.pid,
            describe_exit(code),
            lived,
            f" in {slot.delay:.0f} s" if slot.delay else "",
        )
        slot.restart_at = now + slot.delay

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        for slot in self.slots:
            self._spawn(slot)
        while not self.stopping.wait(0.5):
            for slot in self.slots:
                self._check(slot)
        self._stop_children()
        return 0

    def _stop_children(self) -> None:
        running = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        log.info("stopping %d worker processes", len(running))
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT + 5
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process pid %d did not stop in time: killed", process.pid)
                process.kill()
                process.wait()


def _configure_logging() -> None:
    from pipeline.core.logs import configure_logging
    from pipeline.core.settings import Settings

    configure_logging(Settings().log_format, logging.INFO)


def run_child(threads: int) -> int:
    """One worker process: the dramatiq Worker over `pipeline.workers.entry`'s broker, until SIGTERM."""
    _configure_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C reaches the parent, which stops us
    from pipeline.workers.entry import broker

    broker.emit_after("process_boot")
    worker = start_worker(broker, threads)
    log.info("worker process ready (%d threads)", threads)
    stop.wait()
    worker.stop(timeout=int(STOP_TIMEOUT * 1000))
    broker.close()
    return 0


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    """Start a dramatiq Worker over `broker`, then set the boot's objects aside from the garbage collector.

    What the imports, the runtime and the threads made (~130,000 objects) lives as long as the process: each full
    collection walked all of it again, ~120 ms every few seconds on a busy worker (a sixth of a feed worker's CPU,
    against a fifth of that for the same work without them). Frozen, only what was made since is walked.
    """
    import dramatiq

    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    gc.collect()  # the boot's own garbage goes first: what is frozen is never collected
    gc.freeze()
    return worker


def supervise(processes: int, threads: int, child: list[str]) -> int:
    """Run `processes` worker processes of `threads` threads each, started by the command `child`
    (to which `--threads` is added), until SIGTERM/SIGINT; returns the exit code."""
    _configure_logging()
    log.info("starting %d worker processes of %d threads", processes, threads)
    return Supervisor(processes, [*child, "--threads", str(threads)]).run()
