"""The request body as a blocking stream, for the intake running in a worker thread.

The intake (object store uploads, zip reading, database writes) is synchronous code; the body
arrives on the event loop. `RequestBody.read` runs in a thread started by `anyio.to_thread` and
pulls the next pieces from the loop with `anyio.from_thread.run`, so bytes go from the socket to
the object store as they arrive: at most one read's worth is ever held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.from_thread

from pipeline.ingest.uploads import TooLarge

# Pieces are gathered on the loop up to this much per hop to the thread (uvicorn hands out what each socket read gives).
PULL_BYTES = 1024 * 1024


class RequestBody:
    """Read-only, blocking view of an ASGI request body, cut at `limit` bytes (TooLarge past it)."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._eof = False
        self.limit = limit
        self.count = 0

    async def _pull(self, wanted: int) -> bytes:
        collected = bytearray()
        while len(collected) < wanted:
            try:
                collected += await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                break
        return bytes(collected)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self.limit + 1  # "everything" is never more than the limit allows
        while len(self._buffer) < size and not self._eof:
            piece = anyio.from_thread.run(self._pull, min(size - len(self._buffer), PULL_BYTES))
            self.count += len(piece)
            if self.count > self.limit:
                raise TooLarge(self.limit, "request")
            self._buffer += piece
        with memoryview(self._buffer) as view:
            data = bytes(view[:size])  # one copy: slicing the bytearray itself would make two
        del self._buffer[:size]
        return data

    def readable(self) -> bool:
        return True
