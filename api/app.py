"""The FastAPI application: JSON under /v1, OpenAPI at /openapi.json. Only a health route so far."""

from fastapi import FastAPI

from pipeline import __version__

app = FastAPI(title="DMP", version=__version__)


@app.get("/v1/health")
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}
