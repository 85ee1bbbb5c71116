"""Real servers on loopback standing in for the mail server and the SMS gateway."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from infra.services import free_port


@dataclass
class Mailbox:
    """What an aiosmtpd server received; `refuse` makes it answer RCPT with that reply."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    refuse: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted"


class SmtpServer:
    """An SMTP server on a fixed loopback port that can be stopped and started again (a mail server outage)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@dataclass
class SmsGateway:
    """An HTTP receiver standing in for the SMS gateway; it sends a text once per Idempotency-Key."""

    requests: list[dict] = field(default_factory=list)
    delivered: dict[str, dict] = field(default_factory=dict)  # idempotency key -> first request
    on_request: Callable[[dict], None] | None = None  # runs before the answer (e.g. kill the sender)
    status: int = 200
    port: int = 0


@pytest.fixture
def sms_gateway():
    gateway = SmsGateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = {"body": body, "key": self.headers.get("Idempotency-Key"), "auth": self.headers.get("Authorization")}
            gateway.requests.append(request)
            if gateway.status == 200:
                gateway.delivered.setdefault(request["key"], request)
            if gateway.on_request:
                gateway.on_request(request)
            self.send_response(gateway.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield gateway
    server.shutdown()
    server.server_close()
