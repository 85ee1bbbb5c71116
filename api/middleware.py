"""The shape every middleware of the API shares: plain ASGI (no BaseHTTPMiddleware and its buffering),
acting on HTTP requests only; lifespan and other scopes pass through untouched."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    """Subclasses write `handle` (an HTTP request) and may narrow `applies_to`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies_to(scope):
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    def applies_to(self, scope: Scope) -> bool:
        return True

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
