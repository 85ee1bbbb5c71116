"""Progress of a batch (or of its upload): a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline.ingest.intake import OnProgress
from pipeline.status import Counts


def watch(poll: Callable[[], Counts], finished: Callable[[], bool], label: str, interval: float = 0.5) -> Counts:
    """Poll `poll` until `finished()`, showing done/total, rate and rejected count on stderr."""
    if sys.stderr.isatty():
        return _watch_bar(poll, finished, label, interval)
    return _watch_lines(poll, finished, label, max(interval, 5.0))


def _watch_bar(poll: Callable[[], Counts], finished: Callable[[], bool], label: str, interval: float) -> Counts:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TextColumn("rejected {task.fields[rejected]}"),
        TimeElapsedColumn(),
    )
    start = time.monotonic()
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=None, rate="-", rejected=0)
        while True:
            done_now = finished()
            counts = poll()
            rate = counts.done / max(time.monotonic() - start, 1e-6)
            bar.update(task, total=counts.total, completed=counts.done, rate=f"{rate:.1f}", rejected=counts.rejected)
            if done_now:
                return counts
            time.sleep(interval)


def _watch_lines(poll: Callable[[], Counts], finished: Callable[[], bool], label: str, interval: float) -> Counts:
    start = time.monotonic()
    last = 0.0
    while True:
        done_now = finished()
        counts = poll()
        now = time.monotonic()
        if done_now or now - last >= interval:
            rate = counts.done / max(now - start, 1e-6)
            print(f"{label}: {counts.done}/{counts.total} done, {rate:.1f}/s, {counts.rejected} rejected", file=sys.stderr, flush=True)
            last = now
        if done_now:
            return counts
        time.sleep(0.2)


class Transfer:
    """Bytes sent so far of a known total; `restart` when an upload starts over."""

    def __init__(self, total: int, show: Callable[[int], None]) -> None:
        self.total, self.sent, self._show = total, 0, show

    def advance(self, count: int) -> None:
        self.sent += count
        self._show(self.sent)

    def restart(self) -> None:
        self.sent = 0
        self._show(0)


@contextmanager
def transfer(total: int, label: str) -> Iterator[Transfer]:
    """Upload progress on stderr: a bar (bytes, rate, time left) on a terminal, a line every few seconds otherwise."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task(label, total=total)
            yield Transfer(total, lambda sent: bar.update(task, completed=sent))
        return
    start = last = time.monotonic()

    def line(sent: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 5.0 or sent >= total:
            rate = sent / max(now - start, 1e-6) / 2**20
            print(f"{label}: {sent / 2**20:.1f}/{total / 2**20:.1f} MiB sent, {rate:.1f} MiB/s", file=sys.stderr, flush=True)
            last = now

    yield Transfer(total, line)


@contextmanager
def taking_in(label: str, unit: str) -> Iterator[OnProgress]:
    """Progress of an intake (`unit`s taken in of a total learnt on the way) on stderr: a bar on a
    terminal, a line every few seconds otherwise, and one at the end."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn()) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    start = last = time.monotonic()

    def line(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 5.0 or done >= total:
            rate = done / max(now - start, 1e-6)
            print(f"{label}: {done}/{total} {unit} taken in, {rate:.1f}/s", file=sys.stderr, flush=True)
            last = now

    yield line
