"""The sandbox: a verdict, a timeout or a failure, never a stuck or dead worker."""

from __future__ import annotations

import time

import pytest

from pipeline.reasons import Rejected
from pipeline.workers.sandbox import Limits, SandboxFailed, SandboxTimeout, run_contained

LIMITS = Limits(seconds=2.0, memory_bytes=512 * 1024 * 1024)


def test_a_result_comes_back_from_the_child():
    assert run_contained(divmod, (17, 5), LIMITS) == (3, 2)


def test_a_rejection_in_the_child_is_re_raised_with_its_reason():
    with pytest.raises(Rejected) as caught:
        run_contained(_reject, (), LIMITS)
    assert caught.value.reason == "pdf_corrupt"


def test_a_child_that_never_answers_is_killed_at_its_time_limit():
    start = time.monotonic()
    with pytest.raises(SandboxTimeout):
        run_contained(time.sleep, (60,), Limits(seconds=1.0, memory_bytes=LIMITS.memory_bytes))
    assert time.monotonic() - start < 10


def test_a_child_that_exhausts_its_memory_limit_fails_cleanly():
    with pytest.raises(SandboxFailed, match="memory"):
        run_contained(bytearray, (2 * 1024 * 1024 * 1024,), LIMITS)


def test_a_child_killed_by_a_signal_fails_cleanly():
    with pytest.raises(SandboxFailed):
        run_contained(_die, (), LIMITS)


def _reject() -> None:
    raise Rejected("pdf_corrupt")


def _die() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def test_the_child_is_reused_between_documents_and_replaced_after_a_failure():
    from pipeline.workers import sandbox

    run_contained(divmod, (1, 1), LIMITS)
    first = sandbox._local.inspector.process.pid
    run_contained(divmod, (2, 1), LIMITS)
    assert sandbox._local.inspector.process.pid == first
    with pytest.raises(SandboxFailed):
        run_contained(_die, (), LIMITS)
    assert run_contained(divmod, (7, 2), LIMITS) == (3, 1)
    assert sandbox._local.inspector.process.pid != first


def test_the_cpu_limit_applies_to_each_document_not_the_childs_whole_life():
    short = Limits(seconds=1.0, memory_bytes=LIMITS.memory_bytes)
    # 7 x 0.35 s of CPU in one child: more than one budget (2 s) in total. Each document leaves room
    # for a loaded machine: 0.35 s of CPU within its 1 s of wall time.
    for _ in range(7):
        assert run_contained(_spin, (0.35,), short) == "done"


def _spin(seconds: float) -> str:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return "done"
