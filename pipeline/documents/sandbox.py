"""Running hostile-content parsers in a confined child process with CPU, memory and wall-clock limits.

Why a process: dramatiq's TimeLimit raises an exception in the worker thread, which cannot
interrupt C code (zlib inflating a bomb, libmagic, a regex in a C extension). A child process can
be killed whatever it is doing, and its address space can be capped so a bomb ends in a
MemoryError there instead of the worker being OOM-killed.

Why a fresh interpreter, started with a scrubbed environment: the worker holds every secret
(storage and SMTP credentials in its environment, the master key in memory). A forked child, or a
forkserver started from the worker, would inherit them. The child is exec'ed clean, keeps only its
answer channel and /dev/null as standard streams, imports the parsers, then confines itself
(`confinement.confine`: resource limits, Landlock, seccomp) before it reads any document.

Each worker thread keeps one child (starting an interpreter costs a few hundred milliseconds of
CPU; it is paid once per `max_uses` documents) and sends it a message's documents in one exchange
(`run_contained_many`): the requests written at once, each answer sent back as soon as its document
is done, so that each document keeps its own time limit (counted from the previous answer), CPU
budget and verdict, and the child's process switches are paid once per message rather than twice per
document. The child is killed and replaced when it overruns its time, dies or runs out of memory,
and recycled as soon as its resident memory passes a quarter of its limit, or after `max_uses`
documents, so one file's leftovers cannot pile up (a recycled child's replacement is started ahead,
in the background); the documents after any of these go to the fresh child.

The child reads one request at a time, as before: the next documents' descriptors wait in the
socket, not in the child (whose descriptor limit stays the same). A child taken over by a hostile
file could read them from there, as it would receive them one at a time had it stayed alive: the
documents a hostile file can reach are the same, those after it until its child is replaced.

The document travels as a descriptor (SCM_RIGHTS) of a sealed anonymous file: the child never
learns a name in any filesystem, and nothing it does can change the bytes the worker then seals.
Its answers are read with an unpickler that builds nothing but plain values and the dataclasses
and enums defined in ANSWER_MODULES: a child taken over by a hostile file cannot run code in the
worker through them.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import io
import json
import logging
import math
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, is_dataclass
from enum import Enum
from typing import Any

from pipeline.core.reasons import REASONS, Rejected
from pipeline.documents import confinement
from pipeline.documents.childwire import Reader, descriptor_path, send, send_now

log = logging.getLogger(__name__)
# What the child answers, across a pickle: ("ok", result) | ("rejected", reason, message) | ("failed", why).
# Its shape is checked where it is received (run_contained), so the parts stay Any until then.
Answer = tuple[Any, ...]

# Imported by every child before it confines itself (lazy imports still work: Python's own
# folders stay readable), so the parsers and libmagic's database are loaded while files can be read.
PRELOAD = ("pipeline.documents.inspect",)
# Where the classes an answer may contain, besides plain values, are defined (dataclasses and
# enums of these modules only: never a function, nor a class they import).
ANSWER_MODULES = ("pipeline.documents.inspect",)
ANSWER_MAX_BYTES = 4 * 1024 * 1024
REQUEST_MAX_BYTES = 16 * 1024 * 1024
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
START_SECONDS = 60.0  # an interpreter starting on a loaded machine; not part of a document's time
CHANNEL_FD = 3
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[3]); "
    "from pipeline.documents.sandbox import _child_main; _child_main(int(sys.argv[1]), int(sys.argv[2]))"
)


@dataclass(frozen=True)
class Limits:
    seconds: float
    memory_bytes: int
    # 2,000: the start of an interpreter (~300 ms of CPU) is then 0.15 ms per document, against 1.5 at 200,
    # more than the inspection of a small document itself (`bench validate`); leftovers are bounded by
    # the memory check after each document (`Inspector.grown`), not by this count.
    max_uses: int = 2000


class SandboxTimeout(Exception):
    """The child did not answer within its time limit and was killed."""


class SandboxFailed(Exception):
    """The child died or failed without a verdict (crash, signal, memory exhausted)."""


_local = threading.local()
_reported: set[tuple[str, bool, str]] = set()
_reported_lock = threading.Lock()


# --- the answers: what the worker unpickles of the child's (the wire itself: childwire.py) ----------


class _AnswerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = getattr(importlib.import_module(module), name, None) if module in ANSWER_MODULES else None
        if not (isinstance(found, type) and found.__module__ == module and (is_dataclass(found) or issubclass(found, Enum))):
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an answer")
        return found


# --- the child ---------------------------------------------------------------------------------


def _child_main(channel: int, parent: int) -> None:
    """The child's life: set itself up from the parent's first message, confine itself, then
    answer one (fn, args) after another, each as soon as it is done (the next requests of a batch
    may already be waiting). Runs in the fresh interpreter `_BOOT` starts."""
    _die_with(parent)
    if channel != CHANNEL_FD:
        os.dup2(channel, CHANNEL_FD)
        os.close(channel)
    os.closerange(CHANNEL_FD + 1, 1024)
    sock = socket.socket(fileno=CHANNEL_FD)
    requests = Reader(sock)
    try:
        config, _ = requests.receive(REQUEST_MAX_BYTES)
        limits, modules = pickle.loads(config)
        for module in modules:
            importlib.import_module(module)
        enforced = confinement.confine(limits.memory_bytes)
    except BaseException as exc:  # noqa: BLE001 - tell the parent why, then stop
        send(sock, pickle.dumps(("failed", f"start: {type(exc).__name__}: {exc}")))
        os._exit(1)
    send(sock, pickle.dumps(("ready", [(e.mechanism, e.active, e.detail) for e in enforced])))
    budget = math.ceil(limits.seconds) + 1
    while True:
        try:
            request, fds = requests.receive(REQUEST_MAX_BYTES, want_fds=True)
        except (EOFError, OSError):  # the worker is gone
            os._exit(0)
        fn, args = pickle.loads(request)
        if fds:
            args = (descriptor_path(fds[0]), *args)
        confinement.arm_cpu(budget)
        try:
            answer: Answer = ("ok", fn(*args))
        except Rejected as rejection:
            # Exceptions with custom constructors do not unpickle; send plain values.
            answer = ("rejected", rejection.reason, rejection.message)
        except MemoryError:
            answer = ("failed", "memory")
        except BaseException as exc:  # noqa: BLE001 - a verdict is owed whatever happened
            answer = ("failed", type(exc).__name__)
        finally:
            for fd in fds:
                os.close(fd)
        answer, payload = _encoded(answer)
        send(sock, payload)
        if answer[0] == "failed":
            os._exit(0)  # its state may be damaged: start afresh


def _encoded(answer: Answer) -> tuple[Answer, bytes]:
    """The answer and its bytes; one that cannot travel (unpicklable, too large) becomes a failure."""
    try:
        payload = pickle.dumps(answer)
    except Exception:  # noqa: BLE001 - whatever the result held
        answer = ("failed", "unpicklable answer")
        return answer, pickle.dumps(answer)
    if len(payload) > ANSWER_MAX_BYTES:
        answer = ("failed", "answer too large")
        return answer, pickle.dumps(answer)
    return answer, payload


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this child when the thread that started it ends (its worker was
    killed, or the thread exited); stop at once if that already happened."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, 9, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


# --- the parent --------------------------------------------------------------------------------


class Inspector:
    """One long-lived confined child, used by one thread."""

    def __init__(self, limits: Limits, modules: frozenset[str]) -> None:
        self.limits = limits
        self.modules = modules
        self.uses = 0
        self.statm = -1
        self.conn, child_end = socket.socketpair()
        self.poller = select.poll()
        self.poller.register(self.conn, select.POLLIN)
        self.answers = Reader(self.conn, self.poller)
        path = json.dumps([os.path.abspath(entry) for entry in sys.path])  # the child starts in /
        with child_end:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, str(child_end.fileno()), str(os.getpid()), path],
                env=confinement.scrubbed_environment(os.environ),
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
            )
        try:
            send(self.conn, pickle.dumps((limits, sorted(modules))))
            answer = self._answer(time.monotonic() + START_SECONDS)
        except (EOFError, OSError, pickle.UnpicklingError):
            answer = ("failed", "no answer")
        if answer[0] != "ready":
            self.close()
            # Every document would fail the same way: say why, loudly.
            log.error("parser sandbox: the child did not start (exit %s): %s", self.process.returncode, answer[1:])
            raise SandboxFailed("the child did not start")
        _report(answer[1])
        # Kept open: the child's memory is read after each document with one pread (unreadable: `grown`).
        with suppress(OSError):
            self.statm = os.open(f"/proc/{self.process.pid}/statm", os.O_RDONLY | os.O_CLOEXEC)

    def _answer(self, deadline: float) -> Answer:
        payload, _ = self.answers.receive(ANSWER_MAX_BYTES, deadline)
        try:
            answer = _AnswerUnpickler(io.BytesIO(payload)).load()
        except Exception as exc:  # noqa: BLE001 - whatever the bytes make the unpickler raise
            log.warning("parser sandbox: refused an answer from the child: %s", type(exc).__name__)
            raise pickle.UnpicklingError(str(exc)) from None
        if not isinstance(answer, tuple) or not answer:
            raise pickle.UnpicklingError("not an answer")
        return answer

    def run(self, fn: Callable[..., Any], calls: Sequence[Call]) -> list[Answer | SandboxTimeout | SandboxFailed]:
        """The verdicts of the first of `calls`, in order (at least one). The requests are written
        ahead, the child answers each as soon as it is done, and each document has `limits.seconds`
        from the previous answer. Stops after a document that ends the child (its verdict: the timeout,
        the failure) or after which the child is recycled; the rest get no verdict from this child."""
        requests = [(pickle.dumps((fn, call.args)), call.descriptors) for call in calls[: max(1, self.limits.max_uses - self.uses)]]
        try:
            return self._exchange(requests)
        except BaseException:
            self.close()  # interrupted mid-exchange (a time limit of the thread's): its answers must not serve the next call
            raise

    def _exchange(self, requests: list[tuple[bytes, tuple[int, ...]]]) -> list[Answer | SandboxTimeout | SandboxFailed]:
        verdicts: list[Answer | SandboxTimeout | SandboxFailed] = []
        sent = 0
        while len(verdicts) < len(requests):
            try:
                sent = self._send_ahead(requests, sent, len(verdicts))
                answer = self._answer(time.monotonic() + self.limits.seconds)
            except TimeoutError:
                self.close()
                return [*verdicts, SandboxTimeout()]
            except (EOFError, OSError, pickle.UnpicklingError):
                self.close()
                return [*verdicts, SandboxFailed(f"child exited with {self.process.returncode}")]
            self.uses += 1
            verdicts.append(answer)
            # Memory is read while the child may already work on the next document, so the reading may
            # include it: the child is then replaced all the same, and that document, whose answer is
            # dropped, is inspected again by a fresh child, as it would have been one at a time.
            if answer[0] == "failed" or self.grown():
                self.close()
                return verdicts
        if self.uses >= self.limits.max_uses or self.answers.pending:
            self.close()  # worn out, or it sent more than it was asked for
        return verdicts

    def _send_ahead(self, requests: list[tuple[bytes, tuple[int, ...]]], sent: int, answered: int) -> int:
        """Send the next requests without ever waiting on a busy child (it may hang: only the deadline of
        the answer awaited may stop it): the next one if the child has nothing left to do, then as many
        as the socket takes at once (`send_now`). Returns how many are sent."""
        if sent == answered and sent < len(requests):
            send(self.conn, *requests[sent])
            sent += 1
        while sent < len(requests) and send_now(self.conn, *requests[sent]):
            sent += 1
        return sent

    def grown(self) -> bool:
        """Whether the child's resident memory passed a quarter of its limit: what documents left behind
        (caches, fragments) is dropped with the child before it could make a good document fail for memory."""
        try:
            resident = int(os.pread(self.statm, 256, 0).split()[1]) * PAGE_BYTES
        except (OSError, ValueError, IndexError):
            return True  # gone, or unreadable: start afresh
        return resident > self.limits.memory_bytes // 4

    @property
    def alive(self) -> bool:
        """Running, and with nothing to read: a child that left, or sent what nobody asked for, is not used again."""
        return self.process.poll() is None and self.conn.fileno() != -1 and not self.answers.pending and not self.poller.poll(0)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.conn.close()
        if self.statm >= 0:
            os.close(self.statm)
            self.statm = -1


def _report(enforced: list[tuple[str, bool, str]]) -> None:
    """Log each mechanism's state once per worker process: a warning for each one missing."""
    for mechanism, active, detail in enforced:
        key = (mechanism, active, detail)
        with _reported_lock:
            if key in _reported:
                continue
            _reported.add(key)
        if active:
            log.info("parser sandbox: %s enforced (%s)", mechanism, detail)
        else:
            log.warning("parser sandbox: %s NOT enforced on this host: %s", mechanism, detail)


def _modules_for(fn: Callable[..., Any], current: frozenset[str]) -> frozenset[str]:
    """The modules a child must import before confinement to run `fn`: the parsers, `fn`'s own
    module, and whatever the current child already has (so alternating callers do not respawn it)."""
    module = getattr(fn, "__module__", None) or "builtins"
    return current | set(PRELOAD) | ({module} - set(sys.builtin_module_names))


@dataclass(frozen=True)
class Call:
    """One document's request: `fn(*args)`, or with `document` (a descriptor, ideally of a frozen
    `anonymous_file`) `fn(path_of_it, *args)` in the child, which receives that descriptor."""

    args: tuple[object, ...]
    document: int | None = None

    @property
    def descriptors(self) -> tuple[int, ...]:
        return () if self.document is None else (self.document,)


@dataclass(frozen=True)
class Outcome:
    """One call's verdict: its result, or the exception `run_contained` raises for it."""

    value: Any = None
    error: Exception | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def run_contained(fn: Callable[..., Any], args: tuple[object, ...], limits: Limits, document: int | None = None) -> Any:
    """Run `fn(*args)` in this thread's confined child; return its result or re-raise its Rejected.

    With `document` (a descriptor, ideally of a frozen `anonymous_file`), the child receives that
    descriptor and calls `fn(path_of_it, *args)`. Raises SandboxTimeout past `limits.seconds`,
    SandboxFailed if the child gives no verdict. `fn` and its arguments must be picklable, `fn` in
    an importable module; its result may hold plain values and ANSWER_MODULES' dataclasses and enums.
    """
    return run_contained_many(fn, [Call(args, document)], limits)[0].result()


def run_contained_many(fn: Callable[..., Any], calls: Sequence[Call], limits: Limits) -> list[Outcome]:
    """`run_contained` for each of `calls`, in one exchange with this thread's confined child: the
    requests written at once, the answers read as the child finishes each one. Each call keeps its own
    limits (its time counted from the previous answer, its CPU budget, the child's memory limit) and
    gets its own verdict; a call that kills, hangs or overruns the child fails alone, and the calls
    after it, like those after a recycling, go to a fresh child."""
    outcomes: list[Outcome] = []
    retried = -1  # the call given a second, fresh child
    while len(outcomes) < len(calls):
        try:
            inspector = _inspector_for(fn, limits)
        except SandboxFailed as failure:  # the child did not start: this call's verdict, as one at a time
            outcomes.append(Outcome(error=failure))
            continue
        used_before = inspector.uses
        answers = inspector.run(fn, calls[len(outcomes) :])
        last, answered = len(outcomes) + len(answers) - 1, used_before + len(answers) - 1  # the child's answers before the last
        if _died_unanswered(answers[-1]) and answered > 0 and retried != last:
            # A child that had answered before died without a word on this call: the death may be another
            # document's doing (what it left behind), or the host's (an out-of-memory kill). This call is
            # inspected again by a fresh child, whose verdict stands; a file that kills children dies alone there.
            log.warning("parser sandbox: a child died without a verdict after %d documents; the document goes to a fresh child", answered)
            retried = last
            answers = answers[:-1]
        outcomes += [_outcome(answer) for answer in answers]
        if inspector.uses >= limits.max_uses - SPARE_AHEAD and inspector.alive:
            _prepare_spare(limits, inspector.modules)
    return outcomes


def _died_unanswered(answer: Answer | SandboxTimeout | SandboxFailed) -> bool:
    """Whether the child ended without answering (EOF, a broken channel): not its own verdict of failure."""
    return isinstance(answer, SandboxFailed)


def prepare(fn: Callable[..., Any], limits: Limits) -> None:
    """Start this thread's child for `fn` under `limits` ahead, in the background (a worker thread at its
    boot): the thread's first documents then find it ready instead of waiting for an interpreter's start."""
    if getattr(_local, "inspector", None) is None:
        _prepare_spare(limits, _modules_for(fn, frozenset()))


def _inspector_for(fn: Callable[..., Any], limits: Limits) -> Inspector:
    """This thread's child if it can run `fn` under `limits`, else a new one (a spare if one is ready)."""
    inspector: Inspector | None = getattr(_local, "inspector", None)
    modules = _modules_for(fn, inspector.modules if inspector else frozenset())
    if inspector is None or not inspector.alive or inspector.limits != limits or inspector.modules != modules:
        if inspector is not None:
            inspector.close()
        _local.inspector = None
        inspector = _local.inspector = _next_inspector(limits, modules)
    return inspector


def _outcome(answer: Answer | SandboxTimeout | SandboxFailed) -> Outcome:
    if isinstance(answer, Exception):
        return Outcome(error=answer)
    if answer[0] == "ok" and len(answer) == 2:
        return Outcome(answer[1])
    if answer[0] == "rejected" and len(answer) == 3 and answer[1] in REASONS:
        rejection = Rejected(answer[1])
        rejection.message = str(answer[2])
        return Outcome(error=rejection)
    return Outcome(error=SandboxFailed(str(answer[1:])))


# A child recycled after `max_uses` documents is replaced by a spare started this many documents before, in the
# background: the interpreter's start (a few hundred milliseconds) is then not paid by a document in the thread.
SPARE_AHEAD = 20
# Spares are started by one long-lived thread of the process (the kernel kills a child when the thread that
# started it ends: see `_die_with`), and handed to the worker thread that asked.
_spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmp-sandbox-spawner")


def _prepare_spare(limits: Limits, modules: frozenset[str]) -> None:
    spare: concurrent.futures.Future[Inspector] | None = getattr(_local, "spare", None)
    if spare is None:
        _local.spare = _spawner.submit(Inspector, limits, modules)


def _next_inspector(limits: Limits, modules: frozenset[str]) -> Inspector:
    """This thread's spare if one was started for the same limits and modules (waiting for it if it is still
    starting), else a child started now."""
    spare: concurrent.futures.Future[Inspector] | None = getattr(_local, "spare", None)
    _local.spare = None
    if spare is not None:
        try:
            ready = spare.result()
        except SandboxFailed:
            ready = None
        if ready is not None and ready.alive and ready.limits == limits and ready.modules == modules:
            return ready
        if ready is not None:
            ready.close()
    return Inspector(limits, modules)
