"""The request id: taken from `X-Request-ID` when the caller (or a proxy) sent a plausible one, else
made here; echoed in the response's `X-Request-ID` and carried by every log line of the request."""

from __future__ import annotations

import re
import uuid

from starlette.types import Message, Receive, Scope, Send

from api.middleware import HttpMiddleware
from pipeline.core.logs import bound

HEADER = b"x-request-id"
# An id, not a payload: a header that could smuggle text (or patient data) into the logs is replaced.
PLAUSIBLE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class RequestId(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = next((value for name, value in scope["headers"] if name == HEADER), b"")
        request_id = given.decode() if PLAUSIBLE.fullmatch(given) else uuid.uuid4().hex

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
            await send(message)

        with bound(request_id=request_id):
            await self.app(scope, receive, sending)
