"""Administration of records and sources: `dmp audit verify`, `dmp sources …`, `dmp representatives …`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pipeline.cli.common import fail, open_runtime, reading_runtime
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Done = TypeVar("Done")


def audit_verify(
    chain: Annotated[str | None, typer.Option(help="Only this patient's chain.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check every audit chain's keyed hashes; report the first broken link of each broken chain (exit 1)."""
    from pipeline.access.audit import verify
    from pipeline.core.clock import paris_date
    from pipeline.operations.backlog import verify_audit_log

    rt = reading_runtime(Settings())
    with rt.sessions() as session:
        # A verdict on the whole log is recorded: the metric dmp_audit_chain_broken and its alert.
        broken = verify_audit_log(session, rt.audit_key, paris_date()) if chain is None else verify(session, rt.audit_key, chain)
    rt.close()
    if as_json:
        typer.echo(json.dumps({"ok": not broken, "broken": [dataclasses.asdict(link) for link in broken]}))
    elif not broken:
        typer.echo("audit chains intact")
    for link in broken if not as_json else []:
        typer.echo(f"broken: chain {link.chain} at seq {link.seq} (entry {link.entry_id}): {link.problem}")
    if broken:
        raise typer.Exit(1)


def sources_add(source: Annotated[str, typer.Argument(metavar="KIND:ID", help="hospital:ID, lab:ID or insurer:ID")]) -> None:
    """Create the source's API key and print it, once: only a keyed hash of it is kept."""
    from pipeline.sources import SourceError, SourceExists, add_source

    rt = open_runtime(Settings())
    try:
        with rt.sessions() as session:
            key = add_source(session, rt.hmac_secret, source)
    except (SourceError, SourceExists) as exc:
        fail(str(exc))
    finally:
        rt.close()
    typer.echo(f"API key for {source} (shown once; send it as Authorization: Bearer <key>):", err=True)
    typer.echo(key)


def sources_revoke(source: Annotated[str, typer.Argument(metavar="KIND:ID")]) -> None:
    """Revoke the source's API key at once (`dmp sources add` then makes a new one)."""
    from pipeline.sources import revoke_source

    rt = open_runtime(Settings())
    with rt.sessions() as session:
        revoked = revoke_source(session, source)
    rt.close()
    if not revoked:
        fail(f"{source} has no active key", 1)
    typer.echo(f"{source}: key revoked")


def sources_list() -> None:
    """Every source with its key id, creation and revocation times (never the secret)."""
    from pipeline.sources import list_sources

    rt = reading_runtime(Settings())
    with rt.sessions() as session:
        rows = list_sources(session)
    rt.close()
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        typer.echo(f"{row.id:<40} key {row.key_id}  created {row.created_at:%Y-%m-%d %H:%M}  {state}")


_INS = Annotated[str, typer.Argument(metavar="INS", help="The patient's INS (NIR with its key).")]
_REPRESENTATIVE = Annotated[str, typer.Argument(metavar="ID", help="The representative's id: the subject of their tokens.")]


def _on_representatives(work: Callable[[Session], Done], *, reading: bool = False) -> Done:
    """Run `work(session)` on the index; a malformed INS or id ends the command with its reason."""
    from pipeline.access.representatives import RepresentativeError

    rt = (reading_runtime if reading else open_runtime)(Settings())
    try:
        with rt.sessions() as session:
            return work(session)
    except RepresentativeError as exc:
        fail(str(exc))
    finally:
        rt.close()


def representatives_add(ins: _INS, actor_id: _REPRESENTATIVE) -> None:
    """Register a legal representative: they read the record as the patient does, except what the patient hides from them."""
    from pipeline.access.representatives import add_representative

    patient_id = _on_representatives(lambda session: add_representative(session, ins, actor_id))
    typer.echo(f"{actor_id}: legal representative of record {patient_id}")


def representatives_remove(ins: _INS, actor_id: _REPRESENTATIVE) -> None:
    """Withdraw a legal representative (exit 1 if they were not registered)."""
    from pipeline.access.representatives import remove_representative

    if not _on_representatives(lambda session: remove_representative(session, ins, actor_id)):
        fail(f"{actor_id} is not a registered representative of this record", 1)
    typer.echo(f"{actor_id}: no longer a legal representative")


def representatives_list(ins: _INS) -> None:
    """The record's legal representatives, one id per line."""
    from pipeline.access.representatives import list_representatives

    for actor_id in _on_representatives(lambda session: list_representatives(session, ins), reading=True):
        typer.echo(actor_id)
