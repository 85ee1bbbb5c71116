"""Distributed mode end to end: 2 worker processes on Redis, PostgreSQL and an S3 endpoint over HTTP."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from infra.services import dmp_environment, free_port
from pipeline.documents.stored import read_document
from pipeline.index.models import BatchItem, Document, Outbox
from pipeline.runtime import Runtime
from tests.conftest import read_expected
from tests.distributed.conftest import DMP, ingest, wait_until_final

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory) -> Path:
    from pipeline.samples import generate_samples

    out = tmp_path_factory.mktemp("dist") / "batch"
    generate_samples(out, patients=25, documents=220, seed=11)
    return out


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """For the faults mid-batch, where the size is not the point: each fault still strikes after 30 or
    40 documents are final, with about 50 still to go."""
    from pipeline.samples import generate_samples

    out = tmp_path_factory.mktemp("dist") / "batch"
    generate_samples(out, patients=12, documents=90, seed=11)
    return out


@pytest.fixture
def runtime(settings):
    rt = Runtime.from_settings(settings)
    yield rt
    rt.close()


def _snapshot(rt: Runtime) -> dict:
    with rt.sessions() as session:
        return {
            "documents": session.scalar(select(func.count()).select_from(Document)),
            "items": session.scalar(select(func.count()).select_from(BatchItem)),
            "outbox": session.scalar(select(func.count()).select_from(Outbox)),
            "objects": sorted(rt.store.list_keys()),
        }


def _once_inbox_copies_are_gone(rt: Runtime) -> set[str]:
    """The store's keys once no inbox copy is left, or as they are after the time the pipeline has to delete them.
    A worker deletes a final item's inbox copy just after its commit; one killed in between leaves it to the
    recovery sweep, once the item's lease lapses (pipeline/workers/recovery.py): up to a lease and a sweep later."""
    deadline = time.monotonic() + 2 * rt.settings.claim_lease_seconds + 5
    while True:
        keys = set(rt.store.list_keys())
        if not any(k.startswith("inbox/") for k in keys) or time.monotonic() > deadline:
            return keys
        time.sleep(0.2)


def _assert_exactly_as_expected(rt: Runtime, batch_id: str, batch: Path) -> None:
    expected = read_expected(batch)
    good = {f for f, row in expected.items() if row["expected_state"] == "indexed"}
    with rt.sessions() as session:
        items = session.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id)).all()
        documents = session.scalars(select(Document)).all()
    assert {i.file: (i.state, i.reason or "") for i in items} == {
        f: (r["expected_state"], r["expected_reason"]) for f, r in expected.items()
    }
    by_item = {d.batch_item_id: d for d in documents}
    assert len(documents) == len(good)  # every good document indexed exactly once
    assert {i.file for i in items if i.id in by_item} == good
    # No orphan: the docs/ area holds exactly the indexed objects; no plaintext inbox remains.
    keys = _once_inbox_copies_are_gone(rt)
    assert {k for k in keys if k.startswith("docs/")} == {d.object_key for d in documents}
    assert not {k for k in keys if k.startswith("inbox/")}
    assert {k for k in keys if k.startswith("quarantine/")} == {i.quarantine_key for i in items if i.quarantine_key}


def test_a_batch_of_220_documents_is_processed_by_two_worker_processes(settings, runtime, workers, big_batch):
    summary = ingest(settings, big_batch)
    assert summary["mode"] == "distributed" and summary["total"] >= 220
    workers.start(processes=2, threads=2)
    wait_until_final(runtime, summary["batch"], timeout=240)
    _assert_exactly_as_expected(runtime, summary["batch"], big_batch)

    with runtime.sessions() as session:
        documents = session.scalars(select(Document)).all()
        files = {d.id: session.get(BatchItem, d.batch_item_id).file for d in documents}
    for doc in documents:
        plaintext = (big_batch / files[doc.id]).read_bytes()
        with runtime.store.open(doc.object_key) as handle:
            stored = handle.read()
        assert hashlib.sha256(stored).digest() != hashlib.sha256(plaintext).digest()
        assert plaintext[:64] not in stored
        restored = b"".join(read_document(runtime, doc))
        assert hashlib.sha256(restored).digest() == hashlib.sha256(plaintext).digest()

    before = _snapshot(runtime)
    again = ingest(settings, big_batch)
    assert again["batch"] == summary["batch"]
    time.sleep(2)  # give the workers a chance to (wrongly) do something
    assert _snapshot(runtime) == before


def test_a_worker_killed_mid_batch_is_replaced_and_every_document_ends_once(settings, runtime, workers, batch):
    # The dead group's claims come back once their lease lapses: a short lease, a short wait.
    workers.settings = settings = settings.model_copy(update={"claim_lease_seconds": 3.0})
    summary = ingest(settings, batch)
    workers.start(processes=2, threads=2)
    wait_until_final(runtime, summary["batch"], timeout=120, at_least=40)
    workers.kill()  # SIGKILL the whole worker group mid-batch
    with runtime.sessions() as session:
        in_flight = session.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state == "processing"))
    workers.start(processes=2, threads=2)
    wait_until_final(runtime, summary["batch"], timeout=240)
    _assert_exactly_as_expected(runtime, summary["batch"], batch)
    with runtime.sessions() as session:
        retried = session.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.attempts > 1))
    assert retried >= in_flight


def test_the_batch_completes_when_redis_is_killed_and_restarted_mid_batch(settings, runtime, workers, redis_server, batch):
    summary = ingest(settings, batch)
    workers.start(processes=2, threads=2)
    wait_until_final(runtime, summary["batch"], timeout=120, at_least=30)
    redis_server.kill()
    time.sleep(3)
    redis_server.start()
    wait_until_final(runtime, summary["batch"], timeout=240)
    _assert_exactly_as_expected(runtime, summary["batch"], batch)


def _redis_dump(url: str) -> bytes:
    """Every value Redis holds: queues, delayed retries (with their tracebacks), acks, dead letters."""
    client = redis.Redis.from_url(url)
    readers = {
        b"list": lambda k: client.lrange(k, 0, -1),
        b"hash": lambda k: [v for pair in client.hgetall(k).items() for v in pair],
        b"zset": lambda k: client.zrange(k, 0, -1),
        b"set": lambda k: list(client.smembers(k)),
        b"string": lambda k: [client.get(k)],
    }
    values = [key for key in client.scan_iter()]
    for key in list(values):
        values.extend(readers.get(client.type(key), lambda k: [])(key))
    return b"\n".join(v for v in values if v)


def _patient_data(batch: Path) -> set[bytes]:
    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row["patient_ins"].encode() for row in rows} | {row["title"].encode() for row in rows if len(row["title"]) > 8}


def test_the_batch_completes_when_the_storage_endpoint_stalls_mid_batch(settings, runtime, workers, moto, big_batch):
    # The 220-document batch and a 12 s stall: with 90 documents an idle machine finished the batch before
    # the stall reached a worker, and the log had no retry to show.
    summary = ingest(settings, big_batch)
    workers.start(processes=2, threads=2)
    wait_until_final(runtime, summary["batch"], timeout=120, at_least=30)
    moto.pause()
    try:
        time.sleep(12)  # six S3 timeouts (2 s): attempts fail and are retried with backoff
        broker_during_outage = _redis_dump(settings.broker_url)
    finally:
        moto.resume()
    wait_until_final(runtime, summary["batch"], timeout=240)
    _assert_exactly_as_expected(runtime, summary["batch"], big_batch)

    # What reached the broker and the logs while retrying holds ids and codes, no patient data.
    assert b"dmp_process_document" in broker_during_outage
    leaked_to_broker = {value for value in _patient_data(big_batch) if value in broker_during_outage}
    assert not leaked_to_broker
    log = workers.log.read_bytes()
    assert b"storage_" in log or b"Retrying" in log
    assert not {value for value in _patient_data(big_batch) if value in log}


def test_an_intake_that_cannot_reach_the_broker_stops_cleanly_and_a_rerun_resumes(settings, runtime, workers, batch):
    unreachable = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0", "intake_retries": 2})
    failed = subprocess.run(
        [DMP, "ingest", str(batch), "--source", "hospital:CHU-DIST", "--json"],
        env=dmp_environment(unreachable),
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 3
    assert "run the same command again" in failed.stderr
    assert not _patient_data(batch) & {line.encode() for line in failed.stderr.split()}

    resumed = ingest(settings, batch)
    assert resumed["resumed"] is True
    workers.start(processes=2, threads=2)
    wait_until_final(runtime, resumed["batch"], timeout=240)
    _assert_exactly_as_expected(runtime, resumed["batch"], batch)
