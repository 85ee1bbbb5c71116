"""Log lines (pipeline/core/logs.py): JSON or text, with the ids of the work at hand."""

from __future__ import annotations

import io
import json
import logging

from pipeline.core.logs import bound, configure_logging


def _logged(fmt: str, emit) -> str:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure_logging(fmt, logging.INFO, stream)  # type: ignore[arg-type]
    try:
        emit(logging.getLogger("pipeline.test"))
    finally:
        configure_logging("text", logging.WARNING)
    return stream.getvalue()


def test_a_json_line_carries_the_ids_bound_around_it():
    def emit(log: logging.Logger) -> None:
        with bound(batch_id="b-1"), bound(item_id="i-2"):
            log.info("item %s: %s", "i-2", "indexed")

    line = json.loads(_logged("json", emit))
    assert line["message"] == "item i-2: indexed" and line["level"] == "INFO"
    assert line["batch_id"] == "b-1" and line["item_id"] == "i-2"


def test_ids_are_unbound_when_their_block_ends():
    def emit(log: logging.Logger) -> None:
        with bound(batch_id="b-1"):
            pass
        log.warning("after")

    assert "batch_id" not in json.loads(_logged("json", emit))


def test_text_lines_end_with_the_bound_ids():
    def emit(log: logging.Logger) -> None:
        with bound(request_id="r-9"):
            log.warning("slow")

    assert _logged("text", emit).rstrip().endswith("slow request_id=r-9")


def test_auto_is_json_when_the_stream_is_not_a_terminal():
    assert json.loads(_logged("auto", lambda log: log.warning("hello")))["message"] == "hello"
