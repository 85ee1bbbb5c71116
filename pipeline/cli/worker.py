"""`dmp worker`: the worker processes of distributed mode, a dead one replaced."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.cli.common import fail
from pipeline.core.settings import Settings


def worker(
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option(help="Threads per process.")] = 2,
    child: Annotated[bool, typer.Option("--child", hidden=True, help="Run one worker process (started by the parent).")] = False,
) -> None:
    """Run the workers (distributed mode: needs DMP_BROKER_URL); a worker process that dies is replaced."""
    settings = Settings()
    if settings.embedded_broker:
        fail("dmp worker needs DMP_BROKER_URL (redis://…); in embedded mode dmp ingest runs its own worker")
    from pipeline.workers.supervisor import run_child, supervise

    if child:
        raise typer.Exit(run_child(max(1, threads)))
    if settings.worker_metrics_port:
        from pipeline.workers.exporter import prepare_multiprocess_dir, serve_worker_metrics

        prepare_multiprocess_dir()  # before the children start: they inherit it
        serve_worker_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    # A dead worker process is replaced (and logged), not a reason to stop the others.
    raise typer.Exit(supervise(max(1, processes), max(1, threads), [sys.executable, sys.argv[0], "worker", "--child"]))
