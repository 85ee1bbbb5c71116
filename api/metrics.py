"""Counting HTTP requests for `dmp_api_requests` and `dmp_api_request_duration_seconds`.

A plain ASGI middleware: the labels are the route's template (`/v1/documents/{document_id}`, never
the id in the path), the method and the status; a path no route matched is `unmatched`, so a
scanner cannot grow the number of series.
"""

from __future__ import annotations

import time

from starlette.types import Message, Receive, Scope, Send

from api.middleware import HttpMiddleware
from pipeline.core.metrics import api_latency, api_requests

UNMATCHED = "unmatched"


class RequestMetrics(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method", "")
            api_requests.labels(route, method, str(status)).inc()
            api_latency.labels(route, method).observe(time.perf_counter() - started)
