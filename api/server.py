"""Serving the app with uvicorn: HTTP parsed by httptools, Nagle's algorithm off, and connections spread over
worker processes.

Why not `uvicorn --workers N`: its workers share one listening socket, and a burst of new
connections (a client opening its pool) tends to land on whichever process wakes first, so one
worker serves nearly everything while the others idle (measured by `python -m bench read`). Here
each worker binds its own socket with SO_REUSEPORT and the kernel spreads connections evenly.
Every socket is created as IPPROTO_TCP, and each connection gets TCP_NODELAY: without it a small
response written as headers then body waits about 40 ms for the client's delayed ACK.
httptools (llhttp, in C) rather than h11 (pure Python): h11's parsing and writing were about a quarter of
the API's CPU per list request (py-spy on `dmp api` serving `bench read`'s list).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "api.server:NoDelayHttpToolsProtocol"
RESTART_PAUSE_SECONDS = 1.0


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, setting TCP_NODELAY on the connection's socket, its writes gathered per turn of
    the event loop (`GatheredWrites`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(GatheredWrites(transport))  # type: ignore[arg-type]


class GatheredWrites:
    """A transport whose writes made in one turn of the event loop go out as one, at the end of that turn.

    uvicorn writes a response's head and its body separately: without Nagle's algorithm, two system calls and two
    segments (each woken on the client's side too) for every small answer. Here they leave together, a turn of the
    loop later at most. Everything else is the transport's own; `close` sends what is gathered first."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._gathered: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._gathered:
            asyncio.get_running_loop().call_soon(self._send)
        self._gathered.append(data)

    def _send(self) -> None:
        if self._gathered:
            data, self._gathered = b"".join(self._gathered), []
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def _run_worker(host: str, port: int, access_log: bool, reuse_port: bool) -> None:
    import uvicorn

    from pipeline.core.logs import configure_logging
    from pipeline.core.settings import Settings

    # Our log set-up (DMP_LOG_FORMAT, request ids) rather than uvicorn's own: its lines go through the root logger.
    configure_logging(Settings().log_format, logging.INFO)
    config = uvicorn.Config("api.app:create_app", factory=True, http=HTTP_PROTOCOL, access_log=access_log, log_config=None)
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port, reuse_port)])


def serve(host: str, port: int, workers: int = 1, *, access_log: bool = True) -> None:
    """Run the API (app factory `api.app:create_app`, settings from the environment) until stopped.

    With several workers, a worker that dies is replaced; SIGINT or SIGTERM stops them all.
    """
    if workers == 1:
        _run_worker(host, port, access_log, reuse_port=False)
        return
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_run_worker, args=(host, port, access_log, True), name="dmp-api-worker")
        process.start()
        return process

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    running = [start() for _ in range(workers)]
    try:
        while not stopping:
            for index, process in enumerate(running):
                if not process.is_alive() and not stopping:
                    time.sleep(RESTART_PAUSE_SECONDS)  # a worker failing at start must not spin
                    running[index] = start()
            time.sleep(0.2)
    finally:
        for process in running:
            if process.is_alive():
                process.terminate()  # uvicorn finishes the requests in flight on SIGTERM
        for process in running:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
