"""Readiness and metrics: what an orchestrator and Prometheus ask each API process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.problems import ApiProblem, problem_doc
from pipeline.core.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get("/v1/ready", responses={503: problem_doc("A dependency does not answer: `failing` names it (database, broker, store, keys).")})
def ready(request: Request) -> dict[str, Any]:
    """Readiness: the database, the broker, the object store and the key provider answer (each within 2 s)."""
    result = request.app.state.readiness.check()
    checks = {dependency.value: outcome.value for dependency, outcome in result.checks.items()}
    if not result.ready:
        failing = [dependency.value for dependency in result.failing]
        raise ApiProblem(503, "not_ready", "Not ready", f"Unavailable: {', '.join(failing)}.", extra={"failing": failing, "checks": checks})
    return {"status": "ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text: this process's counters (every process's with PROMETHEUS_MULTIPROC_DIR) and the
    backlog read now from the index and the broker."""
    body, content_type = exposition(request.app.state.scrape)
    return Response(body, media_type=content_type)
