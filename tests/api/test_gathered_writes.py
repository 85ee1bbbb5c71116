"""api.server.GatheredWrites: the writes of one turn of the event loop leave as one."""

from __future__ import annotations

import asyncio

from api.server import GatheredWrites


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_are_sent_as_one_at_its_end():
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        raw = FakeTransport()
        gathered = GatheredWrites(raw)
        gathered.write(b"HTTP/1.1 200 OK\r\n\r\n")
        gathered.write(b"{}")
        before = list(raw.writes)
        await asyncio.sleep(0)  # the turn ends
        return before, raw.writes

    before, after = asyncio.run(scenario())
    assert before == []
    assert after == [b"HTTP/1.1 200 OK\r\n\r\n{}"]


def test_writes_of_later_turns_are_sent_in_order():
    async def scenario() -> list[bytes]:
        raw = FakeTransport()
        gathered = GatheredWrites(raw)
        gathered.write(b"head")
        await asyncio.sleep(0)
        gathered.write(b"chunk 1")
        await asyncio.sleep(0)
        gathered.write(b"chunk 2")
        await asyncio.sleep(0)
        return raw.writes

    assert asyncio.run(scenario()) == [b"head", b"chunk 1", b"chunk 2"]


def test_close_sends_what_is_gathered_before_closing():
    async def scenario() -> FakeTransport:
        raw = FakeTransport()
        gathered = GatheredWrites(raw)
        gathered.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        gathered.close()
        await asyncio.sleep(0)  # the scheduled send finds nothing left
        return raw

    raw = asyncio.run(scenario())
    assert raw.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    assert raw.closed


def test_anything_else_is_the_transports_own():
    assert GatheredWrites(FakeTransport()).get_extra_info("peername") == "info:peername"


def test_a_streamed_body_served_through_the_protocol_arrives_whole_and_in_order():
    import threading

    import httpx2 as httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from api.server import HTTP_PROTOCOL
    from infra.services import free_port, wait_for_port

    chunks = [bytes([n]) * 65536 for n in range(48)]  # 3 MB, each chunk its own turn of the loop

    async def stream(_request: object) -> StreamingResponse:
        async def body():
            for chunk in chunks:
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="application/octet-stream")

    port = free_port()
    app = Starlette(routes=[Route("/stream", stream)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=HTTP_PROTOCOL, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            answers = [client.get("/stream") for _ in range(2)]  # the second on the kept-alive connection
        assert all(answer.status_code == 200 and answer.content == b"".join(chunks) for answer in answers)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
