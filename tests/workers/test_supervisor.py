"""A worker process's start (pipeline/workers/supervisor.py)."""

from __future__ import annotations

import gc

from dramatiq.brokers.stub import StubBroker

from pipeline.workers.supervisor import start_worker


def test_a_started_worker_sets_its_boot_objects_aside_from_the_garbage_collector() -> None:
    gc.unfreeze()
    broker = StubBroker()
    try:
        worker = start_worker(broker, threads=1)
        try:
            assert gc.get_freeze_count() > 0  # full collections no longer walk what the boot made
        finally:
            worker.stop()
    finally:
        gc.unfreeze()
        broker.close()
