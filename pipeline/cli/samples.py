"""`dmp samples` (a synthetic batch) and `dmp demo` (samples through the embedded pipeline, then the API)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import fail
from pipeline.cli.ingest import run_ingest
from pipeline.core.settings import Settings


def samples(
    out: Annotated[Path, typer.Argument(help="Folder to write (must not exist or be empty).")],
    patients: Annotated[int, typer.Option()] = 20,
    documents: Annotated[int, typer.Option()] = 200,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a synthetic batch (PDFs, CDA, a few bad files) with manifest.csv and expected.csv."""
    from pipeline.samples import generate_samples

    try:
        summary = generate_samples(out, patients=patients, documents=documents, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"wrote {summary.documents} manifest rows for {summary.patients} patients to {out}")
    typer.echo(f"expected: {summary.good} indexed, {summary.bad} rejected (see {out / 'expected.csv'})")


def demo(
    documents: Annotated[int, typer.Option()] = 60,
    patients: Annotated[int, typer.Option()] = 8,
    portal: Annotated[
        bool, typer.Option(help="Keep serving the web portal after the scenario, until Ctrl-C (on a terminal only).")
    ] = False,
) -> None:
    """Generate samples and run the embedded pipeline on them, then the API scenario; prints the portal's URL."""
    from pipeline.core.home import prepare_home

    settings = Settings()
    if not settings.embedded_broker:
        fail("dmp demo runs in embedded mode: unset DMP_BROKER_URL")
    prepare_home(settings.home)  # before the samples are written in it: the home is owner-only
    out = settings.home / "demo-batch"
    shutil.rmtree(out, ignore_errors=True)
    samples(out, patients=patients, documents=documents, seed=0)
    run_ingest(settings, out, "hospital:DEMO-CHU", "hospital", as_json=False, threads=2)
    from api.demo import run_api_demo

    # Served only to someone at a terminal: a script or a CI job running `make demo` gets the scenario and its exit.
    interactive = sys.stdin.isatty()
    if portal and not interactive:
        typer.echo("(not on a terminal: the portal is not kept up after the scenario; `dmp api` serves it)")
    run_api_demo(settings, typer.echo, serve_portal=portal and interactive)
