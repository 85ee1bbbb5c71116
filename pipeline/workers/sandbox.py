"""Running hostile-content parsers in a child process with CPU, memory and wall-clock limits.

Why a process: dramatiq's TimeLimit raises an exception in the worker thread, which cannot
interrupt C code (zlib inflating a bomb, libmagic, a regex in a C extension). A child process can
be killed whatever it is doing, and its address space can be capped so a bomb ends in a
MemoryError there instead of the worker being OOM-killed.

Each worker thread keeps one inspector child and sends it documents one at a time: forking a
process per document cost 10-60 ms under load, more than the inspection. The child is killed
and replaced when it overruns its time, dies or runs out of memory, and recycled after
`max_uses` documents so one file's leftovers cannot pile up. Children come from a forkserver
that has the parsers imported, so nothing is forked from the multi-threaded worker itself.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.reasons import Rejected

# "__main__" too: otherwise every child re-imports the parent's main module (for `dmp`, the CLI).
PRELOAD = ["__main__", "pipeline.workers.inspect"]


@dataclass(frozen=True)
class Limits:
    seconds: float
    memory_bytes: int
    max_uses: int = 200


class SandboxTimeout(Exception):
    """The child did not answer within its time limit and was killed."""


class SandboxFailed(Exception):
    """The child died or failed without a verdict (crash, signal, memory exhausted)."""


_context_lock = threading.Lock()
_context: Any = None
_local = threading.local()


def _ctx() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _context = context
        return _context


def _serve(conn: Any, limits: Limits) -> None:
    """The child's loop: one (fn, args) in, one plain-values answer out."""
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    budget = math.ceil(limits.seconds) + 1
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            os._exit(0)
        # RLIMIT_CPU counts the process's whole life: re-arm it for this document.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        spent = math.ceil(usage.ru_utime + usage.ru_stime)
        resource.setrlimit(resource.RLIMIT_CPU, (spent + budget, resource.RLIM_INFINITY))
        try:
            answer: tuple = ("ok", fn(*args))
        except Rejected as rejection:
            # Exceptions with custom constructors do not unpickle; send plain values.
            answer = ("rejected", rejection.reason, rejection.message)
        except MemoryError:
            answer = ("failed", "memory")
        except BaseException as exc:  # noqa: BLE001 - a verdict is owed whatever happened
            answer = ("failed", type(exc).__name__)
        conn.send(answer)
        if answer[0] == "failed":
            os._exit(0)  # its state may be damaged: start afresh


class Inspector:
    """One long-lived sandbox child, used by one thread."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        ctx = _ctx()
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_serve, args=(child_conn, limits), daemon=True)
        self.process.start()
        child_conn.close()
        self.uses = 0

    def run(self, fn: Callable[..., Any], args: tuple) -> tuple:
        self.uses += 1
        try:
            self.conn.send((fn, args))
            if not self.conn.poll(self.limits.seconds):
                self.close()
                raise SandboxTimeout()
            answer = self.conn.recv()
        except (EOFError, OSError):
            self.close()
            raise SandboxFailed(f"child exited with {self.process.exitcode}") from None
        if answer[0] == "failed" or self.uses >= self.limits.max_uses:
            self.close()
        return answer

    @property
    def alive(self) -> bool:
        return self.process.is_alive() and not self.conn.closed

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def run_contained(fn: Callable[..., Any], args: tuple, limits: Limits) -> Any:
    """Run `fn(*args)` in this thread's limited child; return its result or re-raise its Rejected.

    Raises SandboxTimeout past `limits.seconds`, SandboxFailed if the child gives no verdict.
    `fn`, its arguments and its result must be picklable; `fn` must live in an importable module.
    """
    inspector: Inspector | None = getattr(_local, "inspector", None)
    if inspector is None or not inspector.alive or inspector.limits != limits:
        if inspector is not None:
            inspector.close()
        inspector = _local.inspector = Inspector(limits)
    answer = inspector.run(fn, args)
    if answer[0] == "ok":
        return answer[1]
    if answer[0] == "rejected":
        rejection = Rejected(answer[1])
        rejection.message = answer[2]
        raise rejection
    raise SandboxFailed(answer[1])
