"""The FastAPI application: JSON under /v1, OpenAPI at /openapi.json, errors as problem details."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.headers import SecurityHeaders
from api.inputs import BodyLimit
from api.metrics import RequestMetrics
from api.portal import mount_portal
from api.problems import ApiProblem, InternalErrors, http_error_handler, problem_handler, validation_error_handler
from api.requestid import RequestId
from api.routes import careteam, contributions, documents, export, fhir, ingest, me, operations, record, records, versions
from pipeline import __version__
from pipeline.core.settings import Settings
from pipeline.operations.readiness import ReadinessProbe
from pipeline.operations.scrape import ScrapeCollector, broker_reader

if TYPE_CHECKING:
    from pipeline.runtime import Runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (read from the environment when not given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        from api.ingest import Intake
        from pipeline.access.tokens import TokenVerifier
        from pipeline.notify.sweeper import Sweeper
        from pipeline.runtime import Runtime

        # Few threads per process: requests then wait their turn in the event loop instead of fighting
        # over the GIL, which keeps the slowest reads close to the median (measured by `bench read`).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.runtime = Runtime.from_settings(settings, prepare=settings.embedded_broker and not settings.database_url)
        app.state.verifier = TokenVerifier(settings)
        app.state.intake = Intake(settings, app.state.runtime)
        sweeper = Sweeper(app.state.runtime).start() if settings.notify_in_api else None
        app.state.readiness, app.state.scrape = _operations(app.state.runtime)
        # What start-up built (modules, the ORM's mappers, the schema, the routes) lives as long as the process:
        # moved out of the collector's generations, a full collection no longer walks it in the middle of a
        # request (hundreds of thousands of objects: the slowest reads of `bench read` waited on it).
        gc.freeze()
        yield
        app.state.readiness.close()
        if app.state.scrape.broker is not None:
            app.state.scrape.broker.close()
        if sweeper is not None:
            sweeper.stop()
        app.state.intake.close()
        app.state.runtime.close()

    # /docs is the portal's self-hosted Swagger UI (api/portal/docs.py); no ReDoc (it needs other hosts).
    app = FastAPI(title="DMP", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(ApiProblem, problem_handler)  # type: ignore[arg-type]  # Starlette types handlers as taking any Exception
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(BodyLimit)
    # Added last, so outermost: a 500 from InternalErrors gets the security headers too.
    app.add_middleware(InternalErrors)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics)
    app.add_middleware(RequestId)  # outermost: a log line of any layer below carries the request's id
    app.include_router(documents.router)
    app.include_router(versions.records)
    app.include_router(contributions.router)
    app.include_router(record.router)
    app.include_router(records.router)
    app.include_router(careteam.router)
    app.include_router(export.router)
    app.include_router(me.router)
    app.include_router(ingest.router)
    app.include_router(versions.sources)
    app.include_router(operations.router)
    app.include_router(fhir.router)
    mount_portal(app, settings)

    @app.get("/v1/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app


def _operations(rt: Runtime) -> tuple[ReadinessProbe, ScrapeCollector]:
    """The readiness probe and the scrape-time metrics collector of this process."""
    from pipeline.workers.actors import jobs_queue

    queues = [rt.settings.queue_name, jobs_queue(rt.settings.queue_name)]
    return ReadinessProbe(rt), ScrapeCollector(rt, broker_reader(rt, queues))
