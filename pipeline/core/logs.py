"""Log lines: JSON for machines, text for a person at a terminal, with the ids of the work at hand.

`DMP_LOG_FORMAT=json|text|auto` (auto: text when stderr is a terminal, JSON otherwise, as under
systemd, Docker or Kubernetes). Each line carries the ids bound to what the process is doing: the
HTTP request's id (`request_id`, from or echoed in `X-Request-ID`), the batch, item, feed chunk or
job a worker is on. Ids only: the code never logs an INS, a name, a token or document content, and
these fields cannot carry any (they hold generated ids and fixed words).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, TextIO

LogFormat = Literal["json", "text", "auto"]
# The ids a log line may carry, bound with `bound(...)` for the work in progress.
CONTEXT_FIELDS = ("request_id", "batch_id", "item_id", "chunk_id", "job")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("dmp_log_context", default={})  # noqa: B039 (never mutated)
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Log lines written inside the block (in this thread or task) carry `ids`."""
    token = _context.set({**_context.get(), **{name: value for name, value in ids.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current(name: str) -> str | None:
    """The id bound under `name` here, if any."""
    return _context.get().get(name)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (as attributes, which the JSON formatter writes out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get()
        for name in CONTEXT_FIELDS:
            if name in ids and not hasattr(record, name):
                setattr(record, name, ids[name])
        return True


class TextWithIds(logging.Formatter):
    """The text format, followed by the bound ids (`batch_id=… item_id=…`) when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name))
        return f"{line} {ids}" if ids else line


def resolve(fmt: LogFormat, stream: TextIO) -> Literal["json", "text"]:
    if fmt == "auto":
        return "text" if stream.isatty() else "json"
    return fmt


def formatter(fmt: Literal["json", "text"]) -> logging.Formatter:
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
    return TextWithIds(TEXT_FORMAT)


def configure_logging(fmt: LogFormat = "auto", level: int = logging.WARNING, stream: TextIO | None = None, *, replace: bool = True) -> None:
    """Send the root logger's lines to `stream` (stderr) in `fmt`, at `level`, with the bound ids.

    Without `replace`, a process whose logging is already set up (a test runner, an embedding
    application) keeps it, as `logging.basicConfig` does."""
    root = logging.getLogger()
    if root.handlers and not replace:
        return
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(resolve(fmt, stream)))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
