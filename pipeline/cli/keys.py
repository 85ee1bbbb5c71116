"""`dmp keys init|rotate`: the master keys, and re-wrapping what they wrap."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.cli.common import open_runtime
from pipeline.core.settings import Settings


def keys_init() -> None:
    """Create the key file (mode 0600) if it does not exist; share it with every worker machine."""
    from pipeline.core.keys import load_key_file

    path = Settings().resolved_key_file()
    existed = path.exists()
    content = load_key_file(path, create=True)
    typer.echo(f"key file {path} {'already existed' if existed else 'created'} (active master key {content.active_id})")


def keys_rotate(
    resume: Annotated[bool, typer.Option("--resume", help="Only re-wrap what an interrupted rotation left.")] = False,
) -> None:
    """Add a new master key and re-wrap every record key under it (objects are not rewritten), and the
    keys it wraps directly: professionals' contact keys, batch keys and quarantine copies' keys.

    Resumable: run it again (or with --resume) after an interruption. Safe while reads and
    ingestion go on: old master keys stay in the key file for unwrapping.
    """
    from rich.progress import Progress

    from pipeline.core.keys import add_master_key
    from pipeline.core.sealedfields import batch_key_context, contact_key_context, quarantine_key_context
    from pipeline.index.models import Batch, BatchItem, Contact
    from pipeline.index.recordkeys import rewrap_direct_keys

    settings = Settings()
    if not resume and not settings.kms_key_id:
        new_id = add_master_key(settings.resolved_key_file())
        typer.echo(f"new active master key {new_id}")
    rt = open_runtime(settings)
    total = rt.record_keys.pending_rewrap()
    with Progress(disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("re-wrapping record keys", total=total)
        done = rt.record_keys.rewrap(on_progress=lambda n: bar.advance(task, n))
    # The keys sealing professionals' addresses and waiting items' titles (pipeline/core/sealedfields.py).
    direct = rewrap_direct_keys(rt.sessions, rt.keys, Contact, contact_key_context)
    direct += rewrap_direct_keys(rt.sessions, rt.keys, Batch, batch_key_context)
    # Rejected items' quarantine copies, whose data keys a master key wraps directly (their patient may be unknown).
    direct += rewrap_direct_keys(
        rt.sessions, rt.keys, BatchItem, quarantine_key_context, columns=("quarantine_master_key_id", "quarantine_wrapped_key")
    )
    rt.close()
    typer.echo(f"{done} record keys and {direct} contact, batch and quarantine keys re-wrapped under master key {rt.keys.active_id}")
