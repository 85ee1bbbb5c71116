"""The sandbox: a verdict, a timeout or a failure, never a stuck or dead worker."""

from __future__ import annotations

import time

import pytest

from pipeline.core.reasons import Rejected
from pipeline.documents.sandbox import Limits, SandboxFailed, SandboxTimeout, run_contained

pytestmark = pytest.mark.slow  # starts confined children, some on purpose past their limits

LIMITS = Limits(seconds=2.0, memory_bytes=512 * 1024 * 1024)


def test_a_result_comes_back_from_the_child():
    assert run_contained(divmod, (17, 5), LIMITS) == (3, 2)


def test_a_rejection_in_the_child_is_re_raised_with_its_reason():
    with pytest.raises(Rejected) as caught:
        run_contained(_reject, (), LIMITS)
    assert caught.value.reason == "pdf_corrupt"


def test_a_child_that_never_answers_is_killed_at_its_time_limit():
    # The child would sleep past the test's own timeout: only a kill at the limit lets the call return.
    with pytest.raises(SandboxTimeout):
        run_contained(time.sleep, (3600,), Limits(seconds=1.0, memory_bytes=LIMITS.memory_bytes))


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
    from pipeline.documents import sandbox

    run_contained(divmod, (1, 1), LIMITS)
    first = sandbox._local.inspector.process.pid
    run_contained(divmod, (2, 1), LIMITS)
    assert sandbox._local.inspector.process.pid == first
    with pytest.raises(SandboxFailed):
        run_contained(_die, (), LIMITS)
    assert run_contained(divmod, (7, 2), LIMITS) == (3, 1)
    assert sandbox._local.inspector.process.pid != first


def test_a_child_recycled_after_its_uses_is_replaced_by_a_spare_started_before_it():
    from pipeline.documents import sandbox

    limits = Limits(seconds=2.0, memory_bytes=LIMITS.memory_bytes, max_uses=sandbox.SPARE_AHEAD + 2)
    run_contained(divmod, (1, 1), limits)
    first = sandbox._local.inspector.process.pid
    for n in range(limits.max_uses - 1):  # the last of these recycles the first child
        run_contained(divmod, (n, 1), limits)
    spare = sandbox._local.spare.result(timeout=60)  # started in the background before the recycling
    assert not sandbox._local.inspector.alive and spare.alive and spare.process.pid != first
    assert run_contained(divmod, (7, 2), limits) == (3, 1)
    assert sandbox._local.inspector is spare and sandbox._local.inspector.uses == 1


def test_a_thread_prepared_at_its_boot_runs_its_first_document_on_the_child_started_ahead():
    import threading

    from pipeline.documents import sandbox

    seen: dict[str, object] = {}

    def worker_thread() -> None:
        sandbox.prepare(divmod, LIMITS)  # what a worker thread does as it boots (pipeline/workers/entry.py)
        ahead = sandbox._local.spare.result(timeout=60)
        seen["result"] = run_contained(divmod, (7, 2), LIMITS)
        seen["on_the_child_started_ahead"] = sandbox._local.inspector is ahead
        sandbox._local.inspector.close()

    thread = threading.Thread(target=worker_thread)
    thread.start()
    thread.join(timeout=120)
    assert seen == {"result": (3, 1), "on_the_child_started_ahead": True}


_HOARD: list[bytes] = []


def _hoard(size: int) -> int:
    _HOARD.append(b"x" * size)  # kept by the child after the document: leftovers
    return len(_HOARD)


def test_a_child_whose_memory_grew_past_a_quarter_of_its_limit_is_recycled_after_the_document():
    from pipeline.documents import sandbox

    assert run_contained(_hoard, (1024,), LIMITS) == 1
    first = sandbox._local.inspector
    assert first.alive
    assert run_contained(_hoard, (LIMITS.memory_bytes // 4 + 16 * 1024 * 1024,), LIMITS) == 2  # the answer still comes back
    assert not first.alive
    assert run_contained(_hoard, (1024,), LIMITS) == 1  # a fresh child: nothing left over
    assert sandbox._local.inspector.process.pid != first.process.pid


def test_the_cpu_limit_applies_to_each_document_not_the_childs_whole_life():
    budget = Limits(seconds=2.0, memory_bytes=LIMITS.memory_bytes)
    # 18 x 0.25 s of CPU in one child: more than one budget (3 s, plus up to 1 s of rounding) in
    # total. Each document leaves room for a loaded machine (8 busy processes per core): 0.25 s of
    # CPU within its 2 s of wall time.
    for _ in range(18):
        assert run_contained(_spin, (0.25,), budget) == "done"


def _spin(seconds: float) -> str:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return "done"


# --- what a parser taken over by a hostile file could reach from inside the child -------------
#
# Each probe runs in the child and reports "allowed" or the error that refused it.


@pytest.fixture
def fresh_child():
    """The next run_contained starts a new child (it sees the environment as it is now)."""
    from pipeline.documents import sandbox

    inspector = getattr(sandbox._local, "inspector", None)
    if inspector is not None:
        inspector.close()
        sandbox._local.inspector = None


def _attempt(action, *args) -> str:
    try:
        action(*args)
    except OSError as exc:
        return f"refused: {type(exc).__name__}"
    return "allowed"


def _environment() -> dict:
    import os

    return dict(os.environ)


def _read(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _write(path) -> None:
    with open(path, "wb") as handle:
        handle.write(b"exfiltrated")


def _connect(port: int) -> None:
    import socket

    socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _fork() -> None:
    import os

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _exec() -> None:
    import os

    os.execv("/bin/true", ["true"])  # if allowed, the child becomes /bin/true and never answers


def test_the_child_does_not_inherit_the_workers_secrets(monkeypatch, fresh_child):
    monkeypatch.setenv("DMP_S3_SECRET_KEY", "s3-secret-value")
    monkeypatch.setenv("DMP_SMTP_PASSWORD", "smtp-secret-value")
    seen = run_contained(_environment, (), LIMITS)
    assert not {name for name in seen if name.startswith(("DMP_", "AWS_"))}
    assert not [value for value in seen.values() if "secret-value" in value]
    assert run_contained(_attempt, (_read, "/proc/self/environ"), LIMITS).startswith("refused")


def test_the_child_cannot_read_the_master_key_file(tmp_path):
    key_file = tmp_path / "keys.json"
    key_file.write_text('{"master": "not for parsers"}')
    assert run_contained(_attempt, (_read, str(key_file)), LIMITS) == "refused: PermissionError"
    assert run_contained(_attempt, (_read, "/etc/passwd"), LIMITS) == "refused: PermissionError"


def test_the_child_cannot_open_a_socket_nor_reach_loopback():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        assert run_contained(_attempt, (_connect, port), LIMITS) == "refused: PermissionError"
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing got through


def test_the_child_cannot_write_a_file(tmp_path):
    target = tmp_path / "dropped.txt"
    assert run_contained(_attempt, (_write, str(target)), LIMITS).startswith("refused")
    assert not target.exists()


def test_the_child_cannot_start_a_process():
    assert run_contained(_attempt, (_fork,), LIMITS) == "refused: PermissionError"
    assert run_contained(_attempt, (_exec,), LIMITS) == "refused: PermissionError"


def _descriptors(null_device: int) -> dict[int, str]:
    import os
    import stat

    found = {}
    for fd in range(1024):
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == null_device:
            found[fd] = "null"
        elif stat.S_ISSOCK(info.st_mode):
            found[fd] = "socket"
        else:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


def _descriptors_during_a_document(document, null_device: int) -> dict[int, str]:
    return _descriptors(null_device)


def test_the_child_holds_no_descriptor_but_its_channel_and_its_document(fresh_child):
    import os

    from pipeline.documents.childwire import anonymous_file, freeze

    null_device = os.stat("/dev/null").st_rdev
    with open("/dev/null", "rb") as decoy:  # a descriptor of the worker's: must not follow
        os.set_inheritable(decoy.fileno(), True)
        assert run_contained(_descriptors, (null_device,), LIMITS) == {0: "null", 1: "null", 2: "null", 3: "socket"}
        with anonymous_file() as document:
            document.write(b"%PDF-1.7")
            freeze(document)
            seen = run_contained(_descriptors_during_a_document, (null_device,), LIMITS, document=document.fileno())
    assert set(seen) == {0, 1, 2, 3, 4} and seen[4].startswith("/memfd:")


def _limits() -> dict[str, tuple[int, int]]:
    import resource

    names = ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_CORE")
    return {name: resource.getrlimit(getattr(resource, name)) for name in names}


def test_the_child_runs_under_resource_limits():
    limits = run_contained(_limits, (), LIMITS)
    assert limits["RLIMIT_AS"] == (LIMITS.memory_bytes, LIMITS.memory_bytes)
    assert limits["RLIMIT_FSIZE"] == (0, 0)
    assert limits["RLIMIT_NPROC"] == (0, 0)
    assert limits["RLIMIT_CORE"] == (0, 0)
    assert limits["RLIMIT_NOFILE"][1] <= 64


def _tamper(document) -> str:
    import os

    handle = os.open(document, os.O_RDWR)
    try:
        return _attempt(os.write, handle, b"X")
    finally:
        os.close(handle)


def test_the_child_cannot_change_the_document_it_inspects():
    from pipeline.documents.childwire import anonymous_file, freeze

    with anonymous_file() as document:
        document.write(b"%PDF-1.7 original")
        freeze(document)
        assert run_contained(_tamper, (), LIMITS, document=document.fileno()).startswith("refused")
        assert document.read() == b"%PDF-1.7 original"


class _Payload:
    """An answer whose unpickling would call a function of the worker's choosing."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant, (self.marker,))


def _plant(marker: str) -> None:
    from pathlib import Path

    Path(marker).write_text("code ran in the worker")


def _hostile_answer(marker: str) -> _Payload:
    return _Payload(marker)


def test_an_answer_cannot_run_code_in_the_worker(tmp_path):
    marker = tmp_path / "planted"
    with pytest.raises(SandboxFailed):
        run_contained(_hostile_answer, (str(marker),), LIMITS)
    assert not marker.exists()


def test_a_host_without_landlock_or_seccomp_logs_a_warning(monkeypatch, caplog):
    import sys

    from pipeline.documents import confinement, sandbox

    monkeypatch.setattr(confinement, "_loaded", {})
    monkeypatch.setitem(sys.modules, "landlockpy", None)  # as on a host without the library
    monkeypatch.setitem(sys.modules, "pyseccomp", None)
    enforced = [confinement.apply_landlock([]), confinement.apply_seccomp()]
    assert [(e.mechanism, e.active) for e in enforced] == [("landlock", False), ("seccomp", False)]
    monkeypatch.setattr(sandbox, "_reported", set())
    with caplog.at_level("WARNING", logger="pipeline.documents.sandbox"):
        sandbox._report([(e.mechanism, e.active, e.detail) for e in enforced])
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "landlock NOT enforced" in caplog.records[0].getMessage()


def test_an_answer_may_hold_the_inspections_own_classes_but_not_what_it_imports():
    import io
    import pickle

    from pipeline.documents.inspect import Content
    from pipeline.documents.sandbox import _AnswerUnpickler

    verdict = ("ok", Content("application/pdf", pages=2))
    assert _AnswerUnpickler(io.BytesIO(pickle.dumps(verdict))).load() == verdict
    for name in (b"PdfReader", b"inspect_file", b"magic"):  # imported there, or not a class
        with pytest.raises(pickle.UnpicklingError, match="not allowed"):
            _AnswerUnpickler(io.BytesIO(b"cpipeline.workers.inspect\n" + name + b"\n.")).load()


# --- a batch: one exchange, each call with its own limits and verdict ---------------------------


def _pid(_: int) -> int:
    import os

    return os.getpid()


def _verdicts(outcomes) -> list:
    """Each outcome as its result, or its exception's type and reason (when it has one)."""
    seen = []
    for outcome in outcomes:
        try:
            seen.append(outcome.result())
        except Exception as exc:  # noqa: BLE001 - the verdict is the exception
            seen.append((type(exc).__name__, getattr(exc, "reason", None)))
    return seen


def test_a_batch_gives_each_call_the_verdict_it_gets_alone():
    from pipeline.documents.sandbox import Call, run_contained_many

    calls = [((17, 5), divmod), ((), _reject), ((9, 3), divmod), ((40,), _spin_to)]
    batch = _verdicts(run_contained_many(_dispatch, [Call((fn, args)) for args, fn in calls], LIMITS))
    alone = _verdicts(run_contained_many(_dispatch, [Call((fn, args))], LIMITS)[0] for args, fn in calls)
    assert batch == alone == [(3, 2), ("Rejected", "pdf_corrupt"), (3, 0), "done"]


def _dispatch(fn, args):
    return fn(*args)


def _spin_to(milliseconds: int) -> str:
    return _spin(milliseconds / 1000)


def test_a_call_that_hangs_times_out_alone_and_the_calls_after_it_go_to_a_fresh_child():
    from pipeline.documents.sandbox import Call, run_contained_many

    calls = [Call((_pid, (0,))), Call((_pid, (1,))), Call((time.sleep, (3600,))), Call((_pid, (3,))), Call((_pid, (4,)))]
    outcomes = _verdicts(run_contained_many(_dispatch, calls, Limits(seconds=1.0, memory_bytes=LIMITS.memory_bytes)))
    first, second, hung, after, last = outcomes
    assert first == second and hung == ("SandboxTimeout", None)
    assert after == last and after != first  # a fresh child, never the one that hung


@pytest.mark.parametrize(("poison", "failure"), [((_die, ()), "SandboxFailed"), ((bytearray, (2 * 1024**3,)), "SandboxFailed")])
def test_a_call_that_kills_the_child_or_exhausts_its_memory_fails_alone(poison, failure):
    from pipeline.documents.sandbox import Call, run_contained_many

    calls = [Call((_pid, (0,))), Call(poison), Call((_pid, (2,))), Call((_pid, (3,)))]
    before, poisoned, after, last = _verdicts(run_contained_many(_dispatch, calls, LIMITS))
    assert poisoned[0] == failure
    assert after == last and after != before


def test_each_call_of_a_batch_has_its_time_counted_from_the_previous_answer():
    from pipeline.documents.sandbox import Call, run_contained_many

    # Four calls of 0.6 s each: 2.4 s in all, past the 1.5 s limit, which each one is within.
    calls = [Call((time.sleep, (0.6,))) for _ in range(4)]
    outcomes = run_contained_many(_dispatch, calls, Limits(seconds=1.5, memory_bytes=LIMITS.memory_bytes))
    assert _verdicts(outcomes) == [None] * 4


def test_a_child_whose_memory_grew_is_replaced_within_a_batch_and_the_next_call_gets_a_fresh_one():
    from pipeline.documents.sandbox import Call, run_contained_many

    calls = [Call((_hoard, (1024,))), Call((_hoard, (LIMITS.memory_bytes // 4 + 16 * 1024 * 1024,))), Call((_hoard, (1024,)))]
    assert _verdicts(run_contained_many(_dispatch, calls, LIMITS)) == [1, 2, 1]


def test_a_batch_longer_than_a_childs_uses_is_shared_between_children():
    from pipeline.documents.sandbox import Call, run_contained_many

    limits = Limits(seconds=2.0, memory_bytes=LIMITS.memory_bytes, max_uses=3)
    pids = _verdicts(run_contained_many(_dispatch, [Call((_pid, (n,))) for n in range(7)], limits))
    assert [len(set(pids[start : start + 3])) for start in (0, 3, 6)] == [1, 1, 1]
    assert len(set(pids)) == 3


def test_during_a_batch_the_child_holds_only_the_document_it_inspects(fresh_child):
    import os

    from pipeline.documents.childwire import anonymous_file, freeze
    from pipeline.documents.sandbox import Call, run_contained_many

    null_device = os.stat("/dev/null").st_rdev
    with anonymous_file() as one, anonymous_file() as two, anonymous_file() as three:
        for document in (one, two, three):
            document.write(b"%PDF-1.7")
            freeze(document)
        calls = [Call((null_device,), document.fileno()) for document in (one, two, three)]
        seen = _verdicts(run_contained_many(_descriptors_during_a_document, calls, LIMITS))
    assert [set(each) for each in seen] == [{0, 1, 2, 3, 4}] * 3


def test_a_batchs_requests_are_written_ahead_without_waiting_for_the_answers(monkeypatch):
    from pipeline.documents import sandbox

    sandbox.run_contained(divmod, (1, 1), LIMITS)  # the child started outside the count
    waited = []
    send = sandbox.send
    monkeypatch.setattr(sandbox, "send", lambda *args: waited.append(1) or send(*args))
    calls = [sandbox.Call((n, 1)) for n in range(16)]
    assert [outcome.result() for outcome in sandbox.run_contained_many(divmod, calls, LIMITS)] == [(n, 0) for n in range(16)]
    assert len(waited) == 1  # only the first: the child was idle


def test_a_batch_interrupted_in_the_worker_leaves_no_answer_for_the_next_call(monkeypatch):
    from pipeline.documents import sandbox

    sandbox.run_contained(divmod, (1, 1), LIMITS)
    first = sandbox._local.inspector
    answer = first._answer
    monkeypatch.setattr(first, "_answer", lambda deadline: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # as a time limit raised in the worker thread
        sandbox.run_contained_many(divmod, [sandbox.Call((n, 1)) for n in range(4)], LIMITS)
    monkeypatch.setattr(first, "_answer", answer)
    assert first.process.poll() is not None  # killed at once, whether or not its answers had arrived
    assert sandbox.run_contained(divmod, (7, 2), LIMITS) == (3, 1)  # a fresh child's answer, not a stale one


def test_a_reused_child_that_dies_of_something_else_than_the_document_hands_it_to_a_fresh_child():
    from pipeline.documents.sandbox import Call, run_contained_many

    # The first call leaves the child a time bomb (an alarm whose default action ends the process), which goes off
    # while the child inspects the second document: not that document's doing, so it is not its verdict.
    calls = [Call((_leave_an_alarm, (0.3,))), Call((_spin_to, (800,))), Call((_pid, (2,)))]
    armed, slow, after = _verdicts(run_contained_many(_dispatch, calls, Limits(seconds=5.0, memory_bytes=LIMITS.memory_bytes)))
    assert slow == "done"
    assert after != armed  # the fresh child took the document and the ones after it


def test_a_document_that_kills_its_fresh_child_too_fails_without_a_third_try():
    from pipeline.documents import sandbox
    from pipeline.documents.sandbox import Call, run_contained_many

    started = []
    inspector = sandbox.Inspector.__init__

    def counted(self, *args):
        started.append(1)
        inspector(self, *args)

    sandbox.run_contained(divmod, (1, 1), LIMITS)  # a reused child takes the poison first
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox.Inspector, "__init__", counted)
        verdicts = _verdicts(run_contained_many(_dispatch, [Call((_die, ())), Call((_pid, (1,)))], LIMITS))
    assert verdicts[0] == ("SandboxFailed", None)
    assert len(started) == 2  # the retry's child, then the one after the poison killed it again


def _leave_an_alarm(seconds: float) -> int:
    import os
    import signal

    signal.setitimer(signal.ITIMER_REAL, seconds)
    return os.getpid()
