"""A worker process's start (pipeline/workers/supervisor.py)."""

from __future__ import annotations

import gc

from dramatiq.brokers.stub import StubBroker

from pipeline.workers.supervisor import start_worker


def test_a_started_worker_sets_its_boot_objects_aside_from_the_garbage_collector() -> None:
    gc.unfreeze()
    broker = StubBroker()
    try:
        worker = start_worker(broker, threads=1, idle_poll_ms=1000)
        try:
            assert gc.get_freeze_count() > 0  # full collections no longer walk what the boot made
        finally:
            worker.stop()
    finally:
        gc.unfreeze()
        broker.close()


def test_an_idle_workers_queues_are_looked_at_again_after_the_poll_interval_it_was_given() -> None:
    gc.unfreeze()
    broker = StubBroker()
    broker.declare_queue("dmp.documents")
    try:
        worker = start_worker(broker, threads=1, idle_poll_ms=250)
        try:
            assert {consumer.worker_timeout for consumer in worker.consumers.values()} == {250}  # each queue's, its delay queue's
        finally:
            worker.stop()
    finally:
        gc.unfreeze()
        broker.close()
