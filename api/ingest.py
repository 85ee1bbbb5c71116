"""Submissions over HTTP around the upload functions of `pipeline.ingest.uploads`: scope, limits,
the broker, and every failure as a problem document. Routes (api/routes/ingest.py) stay thin shells.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from api.body import RequestBody
from api.problems import ApiProblem, too_large
from pipeline.carehistory.feedformat import FeedError
from pipeline.core.reasons import Transient
from pipeline.core.settings import Settings
from pipeline.ingest import idempotency
from pipeline.ingest.feed_intake import FeedIntake
from pipeline.ingest.intake import IntakeInterrupted, IntakeResult
from pipeline.ingest.manifest import ManifestError
from pipeline.ingest.multipart import MultipartError
from pipeline.ingest.uploads import TooLarge, UploadRejected
from pipeline.runtime import Runtime
from pipeline.sources import SourceIdentity
from pipeline.status import queue_depth
from pipeline.workers.wiring import Wiring, wire

if TYPE_CHECKING:
    from dramatiq import Worker

BATCH_STATUS = "/v1/ingest/batches/{}"
FEED_STATUS = "/v1/ingest/feeds/{}"
UNAVAILABLE_RETRY_SECONDS = 10
# The work of one submission, run in a worker thread: (runtime, body, broker side) -> the 202 answer.
Work = Callable[[Runtime, BinaryIO, Wiring], dict[str, Any]]


UPLOAD_THREADS = 32


class Intake:
    """The API process's broker side, built on the first submission (most API processes only read):
    the actors' wiring on the process's Runtime and, in embedded mode, an in-process worker."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings, self.runtime = settings, runtime
        # Uploads hold a thread for as long as their body arrives: their own pool, so they never take the
        # few threads reads are served from (DMP_API_THREADS).
        self.upload_threads = anyio.CapacityLimiter(UPLOAD_THREADS)
        self._lock = threading.Lock()
        self._wiring: Wiring | None = None
        self._worker: Worker | None = None

    def wiring(self) -> Wiring:
        with self._lock:
            if self._wiring is None:
                self.runtime.store.ensure_ready()  # as `dmp ingest` does: the bucket may not exist yet
                self._wiring = wire(self.settings, runtime=self.runtime)
                if self.settings.embedded_broker:
                    from dramatiq import Worker

                    self._worker = Worker(self._wiring.broker, worker_threads=2)
                    self._worker.start()
            return self._wiring

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
            if self._wiring is not None:
                self._wiring.broker.close()


def require_scope(source: SourceIdentity, what: str) -> None:
    """403 `source_not_allowed` unless this source may submit `what` (documents or feeds)."""
    if not source.may_submit(what):
        raise ApiProblem(403, "source_not_allowed", "Forbidden", f"A {source.kind} source may not submit {what}.")


def batch_work(receive: Callable[..., IntakeResult], *args: object) -> Work:
    """The work of a document or batch submission: `receive(rt, body, *args, send)`, answered.

    The request does not send its items one by one: once they are all recorded and in the inbox,
    one message has a worker send them (`dmp_admit_batch`), so an upload of N documents costs one
    broker round trip instead of N before its answer.
    """

    def work(rt: Runtime, body: BinaryIO, wiring: Wiring) -> dict[str, Any]:
        ready: list[str] = []
        result = receive(rt, body, *args, ready.append)
        if ready:
            wiring.admit_batch(result.batch_id)
        return batch_answer(result)

    return work


def feed_work(receive: Callable[..., FeedIntake], *args: object) -> Work:
    """The work of a feed submission: `receive(rt, body, *args, send_chunk)`, answered."""

    def work(rt: Runtime, body: BinaryIO, wiring: Wiring) -> dict[str, Any]:
        return feed_answer(receive(rt, body, *args, wiring.send_chunk))

    return work


def batch_answer(result: IntakeResult) -> dict[str, Any]:
    return {"batch": result.batch_id, "status_url": BATCH_STATUS.format(result.batch_id), "total": result.total, "resumed": result.resumed}


def feed_answer(result: FeedIntake) -> dict[str, Any]:
    url = FEED_STATUS.format(result.feed_id)
    return {"batch": result.feed_id, "feed": result.feed_id, "status_url": url, "total": result.lines, "resumed": result.resumed}


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise ApiProblem(400, "bad_request", "Bad request", "Content-Length is not a number.")
    return int(value)


def _claim(rt: Runtime, source: str, key: str, route: str, length: int | None) -> idempotency.Replay | None:
    with rt.sessions() as session:
        return idempotency.claim(session, source, key, route, length)


def _settle(rt: Runtime, source: str, key: str, answer: dict[str, Any] | None) -> None:
    with rt.sessions() as session:
        if answer is None:
            idempotency.release(session, source, key)
        else:
            idempotency.finish(session, source, key, 202, answer)


async def submit(request: Request, source: SourceIdentity, route: str, idempotency_key: str | None, work: Work) -> JSONResponse:
    """Run `work` on the streamed body in a worker thread; 202 with the batch id and its status URL.

    With an Idempotency-Key, a retry gets the first 202 back (`Idempotent-Replayed: true`) without
    its body being read; the key is released if this request fails.
    """
    rt: Runtime = request.app.state.runtime
    limit = rt.settings.upload_max_request_bytes
    length = _content_length(request)
    if length is not None and length > limit:
        raise too_large(limit, "request")  # said before a byte is read (curl waits on Expect: 100-continue)
    key = _idempotency_key(idempotency_key)
    if key is not None:
        replay = await _replay_or_claim(rt, source.id, key, route, length)
        if replay is not None:
            headers = {"Location": replay.body.get("status_url", ""), "Idempotent-Replayed": "true"}
            return JSONResponse(replay.body, status_code=replay.status, headers=headers)
    answer = None
    try:
        await refuse_when_queue_full(rt)
        if key is None:
            answer = await _run(request, rt, limit, work)
        else:
            with idempotency.renewing(rt, source.id, key):
                answer = await _run(request, rt, limit, work)
    finally:
        if key is not None:
            with anyio.CancelScope(shield=True):  # a client gone mid-upload must still free its key
                await anyio.to_thread.run_sync(_settle, rt, source.id, key, answer)
    return JSONResponse(answer, status_code=202, headers={"Location": answer["status_url"]})


def _depth(rt: Runtime) -> int:
    with rt.sessions() as session:
        return queue_depth(session)


async def refuse_when_queue_full(rt: Runtime) -> None:
    """Back-pressure: 429 with Retry-After while more than DMP_INGEST_MAX_QUEUED items wait for a worker.

    Checked when a submission starts, so concurrent ones may overshoot the bound by a batch each.
    """
    if await anyio.to_thread.run_sync(_depth, rt) > rt.settings.ingest_max_queued:
        wait = rt.settings.ingest_retry_after_seconds
        detail = f"More than {rt.settings.ingest_max_queued} documents are waiting to be processed; retry in {wait} s."
        extra = {"retry_after_seconds": wait}
        raise ApiProblem(429, "queue_full", "Too many requests", detail, extra=extra, headers={"Retry-After": str(wait)})


def _idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    try:
        return idempotency.parse_key(header)
    except idempotency.KeyInvalid as exc:
        raise ApiProblem(400, "invalid_idempotency_key", "Bad request", str(exc)) from None


async def _replay_or_claim(rt: Runtime, source: str, key: str, route: str, length: int | None) -> idempotency.Replay | None:
    try:
        return await anyio.to_thread.run_sync(_claim, rt, source, key, route, length)
    except idempotency.KeyInUse:
        detail = "A request with this Idempotency-Key is still running; retry after it."
        raise ApiProblem(409, "idempotency_key_in_use", "Conflict", detail, headers={"Retry-After": "5"}) from None
    except idempotency.KeyReused:
        detail = "This Idempotency-Key was used for another submission; use a new key."
        raise ApiProblem(422, "idempotency_key_reused", "Unprocessable submission", detail) from None


async def _run(request: Request, rt: Runtime, limit: int, work: Work) -> dict[str, Any]:
    """The upload itself, every failure turned into its problem document."""
    wiring = await anyio.to_thread.run_sync(request.app.state.intake.wiring)
    body = cast(BinaryIO, RequestBody(request.stream(), limit))  # read() is all the upload functions ask of it
    try:
        return await anyio.to_thread.run_sync(work, rt, body, wiring, limiter=request.app.state.intake.upload_threads)
    except TooLarge as exc:
        raise too_large(exc.limit, exc.what) from None
    except (ManifestError, UploadRejected) as exc:
        raise ApiProblem(422, exc.code, "Unprocessable submission", str(exc)) from None
    except FeedError as exc:
        raise ApiProblem(422, "feed_invalid", "Unprocessable feed", str(exc)) from None
    except MultipartError as exc:
        raise ApiProblem(400, "multipart_invalid", "Malformed multipart body", str(exc)) from None
    except (Transient, DBAPIError, IntakeInterrupted):
        # Texts of these can quote row values: name nothing.
        retry = {"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)}
        detail = "Storage, broker or index unreachable; send it again."
        raise ApiProblem(503, "service_unavailable", "Service unavailable", detail, headers=retry) from None
