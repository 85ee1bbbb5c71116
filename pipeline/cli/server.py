"""`dmp api` (serve the HTTP API) and `dmp token` (a bearer token for trying it out)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.common import fail, open_runtime
from pipeline.core.settings import Settings


def token(
    sub: Annotated[str, typer.Option(help="Subject: the patient id, or the professional's RPPS, or an organisation id.")],
    kind: Annotated[str, typer.Option(help="patient, legal_representative, professional, emergency_regulator, ...")],
    profession: Annotated[str | None, typer.Option(help="For professionals: physician, nurse, pharmacist, ...")] = None,
    specialty: Annotated[str | None, typer.Option()] = None,
    rpps: Annotated[str | None, typer.Option(help="For professionals (defaults to --sub).")] = None,
    facility: Annotated[str | None, typer.Option(help="The actor's facility, e.g. hospital:CHU-NANTES.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a bearer token with the embedded signing key, for trying the API out (not for production)."""
    from pipeline.access.tokens import AuthError, mint_token

    settings = Settings()
    if kind == "professional" and rpps is None:
        rpps = sub
    try:
        typer.echo(
            mint_token(settings, sub, kind, profession=profession, specialty=specialty, rpps=rpps, facility_id=facility, ttl_seconds=ttl)
        )
    except (AuthError, ValueError) as exc:
        fail(str(exc))


def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (each with its own pools).")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log one line per request (method, path, status).")] = True,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    from api.server import serve

    settings = Settings()
    if not settings.embedded_broker or settings.database_url:  # embedded: the app prepares its own index
        open_runtime(settings).close()  # the index reachable and its schema this version's, before serving
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    typer.echo(f"DMP API on {base} (interactive documentation: {base}/docs, OpenAPI: {base}/openapi.json); Ctrl-C stops it")
    serve(host, port, workers, access_log=access_log)
