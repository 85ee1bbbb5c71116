"""Measuring a benchmark from outside the processes it measures.

- CPU: the kernel's counters of a process and its descendants (`/proc/<pid>/stat` through psutil),
  reaped children included, so a worker's sandbox children and a server's ended backends count.
- Object-store requests: moto_server's request log (one line per HTTP request), by method.
- SQL statements and commits: pg_stat_statements on a server of the benchmark's own, for one role.
- SQL round trips: a proxy in front of PostgreSQL counting, per connection, each time the client
  speaks after the server has answered (a pipelined burst of statements is one round trip).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableSequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    import psycopg

# Round trips and connections, shared with the proxy process (a RawArray of two counters).
Counters = MutableSequence[int]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and every descendant, children already reaped included."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # ended between the listing and the reading: its parent counts it once reaped
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def wait_idle(pid: int, timeout: float = 60) -> None:
    """Until a booting process tree stops spending CPU (its imports and connections are done)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    time.sleep(2)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < 0.05:
            return
        last = now


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core, every process, ours or not)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclass
class CpuMeter:
    """CPU seconds of named process trees between `start` and `stop`, and of the whole machine."""

    pids: Mapping[str, int]
    started: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {"machine": machine_busy_seconds()}

    def start(self) -> None:
        self.started = self._read()

    def stop(self) -> dict[str, float]:
        self.spent = {name: value - self.started[name] for name, value in self._read().items()}
        return self.spent


# ---------------------------------------------------------------------------------------------
# Object-store requests, from moto_server's log

# werkzeug's request log line: 127.0.0.1 - - [date] "PUT /bucket/key?x=y HTTP/1.1" 200 -
_REQUEST = re.compile(r'"([A-Z]+) (/[^ "]*) HTTP/[0-9.]+" (\d{3})')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_request(line: str) -> tuple[str, str, int] | None:
    """(method, path, status) of one request log line; None for any other line (start-up banner)."""
    match = _REQUEST.search(_ANSI.sub("", line))
    if match is None:
        return None
    return match.group(1), match.group(2), int(match.group(3))


def count_requests(lines: Iterable[str], bucket: str) -> Counter[str]:
    """Requests on `bucket` (path-style addressing) by method, plus `errors` (status 400 and up)."""
    counts: Counter[str] = Counter()
    for line in lines:
        request = parse_request(line)
        if request is None:
            continue
        method, path, status = request
        if path.split("?", 1)[0].split("/")[1] != bucket:
            continue
        counts[method] += 1
        if status >= 400:
            counts["errors"] += 1
    return counts


@dataclass
class RequestLog:
    """moto_server's request log file: `mark()` where a phase starts, `count(mark, bucket)` after it."""

    path: Path

    def mark(self) -> int:
        return self.path.stat().st_size

    def count(self, since: int, bucket: str) -> Counter[str]:
        with self.path.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", "replace")
        return count_requests(text.splitlines(), bucket)


# ---------------------------------------------------------------------------------------------
# SQL statements, from pg_stat_statements


def statement_kind(query: str) -> str:
    """SELECT, INSERT, UPDATE, DELETE, BEGIN, COMMIT, ROLLBACK, COPY, WITH…: a statement's first keyword."""
    words = re.findall(r"[A-Za-z]+", re.sub(r"/\*.*?\*/|--[^\n]*", " ", query, flags=re.S), flags=0)
    return words[0].upper() if words else "OTHER"


def statements_by_kind(connection: psycopg.Connection[Any], role: str) -> Counter[str]:
    """Statements executed by `role` in the current database since the last reset, by kind
    (`connection`: a psycopg connection of a superuser, with the extension created)."""
    rows = connection.execute(
        "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
        " WHERE r.rolname = %s AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [role],
    ).fetchall()
    counts: Counter[str] = Counter()
    for query, calls in rows:
        counts[statement_kind(query)] += calls
    return counts


def reset_statements(connection: psycopg.Connection[Any]) -> None:
    connection.execute("SELECT pg_stat_statements_reset()")


# ---------------------------------------------------------------------------------------------
# SQL round trips, through a counting proxy


class Turns:
    """The round trips of one connection: each time the client sends after the server has answered
    (or first). What the client sends before any answer (a pipeline of statements, a COPY's rows)
    is one round trip."""

    def __init__(self) -> None:
        self.count = 0
        self._client_turn = False

    def client_sent(self) -> bool:
        """Record client bytes; True when they open a new round trip."""
        if self._client_turn:
            return False
        self._client_turn = True
        self.count += 1
        return True

    def server_sent(self) -> None:
        self._client_turn = False


class _Downstream(asyncio.Protocol):
    def __init__(self, upstream_port: int, totals: Counters) -> None:
        self.upstream_port, self.totals = upstream_port, totals
        self.turns = Turns()
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP server's
        self.transport = transport
        self.totals[1] += 1
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(lambda: _Upstream(self), "127.0.0.1", self.upstream_port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.upstream = upstream
        for data in self.pending:
            upstream.write(data)
        self.pending = []

    def data_received(self, data: bytes) -> None:
        if self.turns.client_sent():
            self.totals[0] += 1
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


class _Upstream(asyncio.Protocol):
    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream

    def data_received(self, data: bytes) -> None:
        self.downstream.turns.server_sent()
        assert self.downstream.transport is not None
        self.downstream.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.downstream.transport is not None:
            self.downstream.transport.close()


def _serve(listen_port: int, upstream_port: int, totals: Counters, ready: Event) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(lambda: _Downstream(upstream_port, totals), "127.0.0.1", listen_port)
        ready.set()
        async with server:
            await stop.wait()

    asyncio.run(main())


class RoundTripProxy:
    """A TCP proxy to a PostgreSQL server on `upstream_port`, in a process of its own (its CPU is not
    the benchmark's), counting round trips (see `Turns`) and connections over all its connections."""

    def __init__(self, listen_port: int, upstream_port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.port = listen_port
        self._totals = context.RawArray("q", 2)  # round trips, connections: one writer, read without a lock
        self._ready = context.Event()
        self.process = context.Process(target=_serve, args=(listen_port, upstream_port, self._totals, self._ready), daemon=True)

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 60
        while not self._ready.wait(0.1):
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("the round-trip proxy did not start")

    @property
    def round_trips(self) -> int:
        return int(self._totals[0])

    @property
    def connections(self) -> int:
        return int(self._totals[1])

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


# ---------------------------------------------------------------------------------------------
# Floor processes, started together


class ProcessTeam:
    """Spawned processes that get ready, start their work together on `go`, put one result each on
    `results`, and stay until `leave` (so that their CPU can be read once their work is done).

    `target(*args, ready, go, results, leave)` runs in each, with its own `args`."""

    def __init__(self, target: Callable[..., None], args: list[tuple[object, ...]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.go, self.leave, self.results = context.Event(), context.Event(), context.Queue()
        self.ready = [context.Event() for _ in args]
        self.processes = [
            context.Process(target=target, args=(*own, self.ready[n], self.go, self.results, self.leave), daemon=True)
            for n, own in enumerate(args)
        ]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.exitcode not in (None, 0):
                raise RuntimeError(f"a floor process ended with exit code {process.exitcode}")

    def start(self, timeout: float = 120) -> None:
        """Start every process and wait until each is ready."""
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + timeout
        for ready in self.ready:
            while not ready.wait(0.2):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("a floor process did not get ready")

    def gather(self, timeout: float = 3600) -> list[Any]:
        """One result per process, in the order they came; fails as soon as a process dies without one."""
        import queue

        results: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(results) < len(self.processes):
            try:
                results.append(self.results.get(timeout=0.5))
            except queue.Empty:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("the floor processes did not finish") from None
        return results

    def close(self) -> None:
        self.leave.set()
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()
