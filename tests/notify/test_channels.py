"""Delivery channels against real servers on loopback: aiosmtpd for SMTP, a threaded HTTP server for the SMS gateway."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import json
import pickle
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from infra.services import free_port
from pipeline.core.settings import Settings
from pipeline.notify.channels import (
    Channel,
    DeliveryError,
    LogSink,
    Message,
    SmsGatewayChannel,
    SmtpChannel,
    channels_from_settings,
)

pytestmark = pytest.mark.timeout(30)

SENDER = "Mon espace santé <no-reply@dmp.example>"
USER, PASSWORD = "dmp-notify", "correct horse"


def a_message(key: str = "notif-1.email", to: str = "patient@example.org", **changes: str) -> Message:
    fields = {"idempotency_key": key, "to": to, "subject": "Nouveau document", "body": "Un document a été ajouté à votre dossier."}
    fields.update(changes)
    return Message(**fields)


# --- SMTP server -----------------------------------------------------------------------------------------------------


class Collector:
    """aiosmtpd handler keeping every accepted envelope (and whether it came over TLS); RCPT answer configurable."""

    def __init__(self, rcpt_reply: str | None = None, data_reply: str | None = None) -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.envelopes: list = []
        self.tls: list[bool] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd hook name
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        self.tls.append(session.ssl is not None)
        return "250 Message accepted for delivery"

    def parsed(self, index: int = 0) -> email.message.EmailMessage:
        return email.message_from_bytes(self.envelopes[index].content, policy=email.policy.default)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Collector, int]]]:
    """Start aiosmtpd controllers on free loopback ports (any SMTP options); all are stopped after the test."""
    controllers: list[Controller] = []

    def start(handler: Collector | None = None, **smtp_options) -> tuple[Collector, int]:
        handler = handler or Collector()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, trusted only by the contexts built from it."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True
        )  # digital_signature, key_cert_sign
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def smtp_channel(port: int, **options) -> SmtpChannel:
    options.setdefault("starttls", False)
    return SmtpChannel("127.0.0.1", port, SENDER, timeout=5, **options)


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd then answers 535 itself (handled=True would leave the client waiting for a reply).
    return AuthResult(success=ok, handled=False)


# Plain-text AUTH is fine on loopback; aiosmtpd warns about it on every start.
plain_auth_on_loopback = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


# --- SMTP ------------------------------------------------------------------------------------------------------------


def test_email_is_delivered_with_sender_recipient_subject_message_id_and_body(smtp_server) -> None:
    collector, port = smtp_server()
    smtp_channel(port).send(a_message(key="notif-1.email"))

    [envelope] = collector.envelopes
    assert envelope.mail_from == "no-reply@dmp.example"
    assert envelope.rcpt_tos == ["patient@example.org"]
    parsed = collector.parsed()
    assert parsed["From"].addresses[0].display_name == "Mon espace santé"
    assert parsed["From"].addresses[0].addr_spec == "no-reply@dmp.example"
    assert parsed["To"] == "patient@example.org"
    assert parsed["Subject"] == "Nouveau document"
    assert parsed["Message-ID"] == "<notif-1.email@dmp.notifications>"
    assert parsed["Date"].datetime is not None
    assert parsed.get_content().strip() == "Un document a été ajouté à votre dossier."


def test_same_idempotency_key_gives_the_same_message_id_on_resend(smtp_server) -> None:
    collector, port = smtp_server()
    channel = smtp_channel(port)
    channel.send(a_message(key="outbox:42/email"))  # not a dot-atom: the Message-ID is derived by hashing
    channel.send(a_message(key="outbox:42/email"))
    channel.send(a_message(key="outbox:43/email"))

    first, resend, other = (collector.parsed(i)["Message-ID"] for i in range(3))
    assert first == resend
    assert other != first
    assert first.endswith("@dmp.notifications>")


def test_line_breaks_in_subject_become_spaces_and_inject_no_header(smtp_server) -> None:
    collector, port = smtp_server()
    smtp_channel(port).send(a_message(subject="Nouveau\r\nBcc: intruder@evil.example\ndocument"))

    parsed = collector.parsed()
    assert parsed["Subject"] == "Nouveau Bcc: intruder@evil.example document"
    assert parsed["Bcc"] is None
    assert collector.envelopes[0].rcpt_tos == ["patient@example.org"]


def test_address_with_line_break_is_rejected_permanently_without_connecting() -> None:
    channel = smtp_channel(free_port())  # nothing listens: reaching the network would be smtp_unavailable
    with pytest.raises(DeliveryError) as caught:
        channel.send(a_message(to="patient@example.org\r\nBcc: intruder@evil.example"))
    assert (caught.value.code, caught.value.permanent) == ("invalid_address", True)


def test_email_is_delivered_over_starttls_when_the_server_requires_it(smtp_server, certificate) -> None:
    collector, port = smtp_server(tls_context=certificate.server_context(), require_starttls=True)
    smtp_channel(port, starttls=True, ssl_context=certificate.client_context()).send(a_message())

    assert len(collector.envelopes) == 1
    assert collector.tls == [True]


def test_starttls_required_but_not_offered_refuses_to_send_in_clear(smtp_server) -> None:
    collector, port = smtp_server()  # no tls_context: the server does not advertise STARTTLS
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port, starttls=True).send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_starttls_unavailable", False)
    assert collector.envelopes == []


def test_untrusted_server_certificate_fails_transiently_and_sends_nothing(smtp_server, certificate) -> None:
    collector, port = smtp_server(tls_context=certificate.server_context(), require_starttls=True)
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port, starttls=True, ssl_context=ssl.create_default_context()).send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_tls_failed", False)
    assert collector.envelopes == []


def test_email_is_delivered_over_implicit_tls(smtp_server, certificate) -> None:
    collector, port = smtp_server(ssl_context=certificate.server_context())
    smtp_channel(port, ssl=True, starttls=True, ssl_context=certificate.client_context()).send(a_message())

    assert len(collector.envelopes) == 1


@plain_auth_on_loopback
def test_login_with_the_right_password_delivers(smtp_server) -> None:
    collector, port = smtp_server(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    smtp_channel(port, username=USER, password=PASSWORD).send(a_message())

    assert len(collector.envelopes) == 1


@plain_auth_on_loopback
def test_wrong_password_is_smtp_auth_failed_and_transient(smtp_server) -> None:
    collector, port = smtp_server(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port, username=USER, password="wrong").send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_auth_failed", False)
    assert collector.envelopes == []


def test_login_over_starttls_delivers(smtp_server, certificate) -> None:
    collector, port = smtp_server(authenticator=authenticator, auth_required=True, tls_context=certificate.server_context())
    smtp_channel(port, starttls=True, ssl_context=certificate.client_context(), username=USER, password=PASSWORD).send(a_message())

    assert collector.tls == [True]


def test_recipient_refused_with_550_is_permanent(smtp_server) -> None:
    _, port = smtp_server(Collector(rcpt_reply="550 5.1.1 no such user"))
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port).send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_recipient_refused", True)


def test_recipient_deferred_with_451_is_transient(smtp_server) -> None:
    _, port = smtp_server(Collector(rcpt_reply="451 try later"))
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port).send(a_message())
    assert caught.value.permanent is False


def test_relay_denied_at_rcpt_is_a_transient_policy_refusal_not_a_bad_address(smtp_server) -> None:
    _, port = smtp_server(Collector(rcpt_reply="554 5.7.1 Relay access denied"))
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port).send(a_message())
    assert caught.value.permanent is False
    assert caught.value.code != "smtp_recipient_refused"


def test_refusal_after_data_naming_the_mailbox_is_permanent(smtp_server) -> None:
    _, port = smtp_server(Collector(data_reply="550 5.1.1 mailbox unknown"))
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port).send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_recipient_refused", True)


def test_refusal_after_data_for_the_content_is_transient_and_blames_no_address(smtp_server) -> None:
    _, port = smtp_server(Collector(data_reply="554 5.7.1 message rejected as spam"))
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port).send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_rejected", False)


def test_smtp_server_down_is_transient() -> None:
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(free_port()).send(a_message())
    assert (caught.value.code, caught.value.permanent) == ("smtp_unavailable", False)


def test_error_text_never_contains_the_body(smtp_server) -> None:
    _, port = smtp_server(Collector(rcpt_reply="550 5.1.1 no such user"))
    body = "SECRET-BODY-TEXT"
    with pytest.raises(DeliveryError) as caught:
        smtp_channel(port).send(a_message(body=body))
    assert body not in str(caught.value) and body not in repr(caught.value)


def test_delivery_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(DeliveryError("smtp_unavailable", False, "ConnectionRefusedError")))
    assert (error.code, error.permanent, error.detail) == ("smtp_unavailable", False, "ConnectionRefusedError")


# --- SMS gateway -----------------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    requests: list[dict] = field(default_factory=list)


@pytest.fixture
def sms_gateway() -> Iterator[Callable[[int], Gateway]]:
    """Start HTTP receivers on loopback answering a fixed status and recording each request; stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 202) -> Gateway:
        gateway = Gateway(url="")

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server hook name
                length = int(self.headers.get("Content-Length", 0))
                gateway.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(self.rfile.read(length))})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        gateway.url = f"http://127.0.0.1:{server.server_address[1]}/v1/sms"
        return gateway

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_sms_posts_json_with_bearer_token_and_idempotency_key(sms_gateway) -> None:
    gateway = sms_gateway(202)
    SmsGatewayChannel(gateway.url, "gw-token", timeout=5).send(a_message(key="notif-1.sms", to="+33612345678"))

    [request] = gateway.requests
    assert request["path"] == "/v1/sms"
    assert request["json"] == {"to": "+33612345678", "text": "Un document a été ajouté à votre dossier."}
    assert request["headers"]["Authorization"] == "Bearer gw-token"
    assert request["headers"]["Idempotency-Key"] == "notif-1.sms"


def test_sms_without_token_sends_no_authorization_header(sms_gateway) -> None:
    gateway = sms_gateway(200)
    SmsGatewayChannel(gateway.url, None, timeout=5).send(a_message(to="+33612345678"))

    assert "Authorization" not in gateway.requests[0]["headers"]


def test_sms_longer_than_three_parts_is_truncated_with_an_ellipsis(sms_gateway) -> None:
    gateway = sms_gateway(200)
    SmsGatewayChannel(gateway.url, None, timeout=5).send(a_message(to="+33612345678", body="x" * 1000))

    text = gateway.requests[0]["json"]["text"]
    assert len(text) == 459
    assert text == "x" * 458 + "…"


def test_sms_gateway_503_is_transient(sms_gateway) -> None:
    gateway = sms_gateway(503)
    with pytest.raises(DeliveryError) as caught:
        SmsGatewayChannel(gateway.url, None, timeout=5).send(a_message(to="+33612345678"))
    assert (caught.value.code, caught.value.permanent) == ("sms_gateway_unavailable", False)


def test_sms_gateway_400_is_a_permanent_number_rejection(sms_gateway) -> None:
    gateway = sms_gateway(400)
    with pytest.raises(DeliveryError) as caught:
        SmsGatewayChannel(gateway.url, None, timeout=5).send(a_message(to="+33612345678"))
    assert (caught.value.code, caught.value.permanent) == ("sms_number_rejected", True)


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (408, "sms_gateway_unavailable", False),
        (429, "sms_gateway_unavailable", False),
        (500, "sms_gateway_unavailable", False),
        (404, "sms_number_rejected", True),
        (410, "sms_number_rejected", True),
        (422, "sms_number_rejected", True),
        (401, "sms_gateway_auth_failed", False),
        (403, "sms_gateway_auth_failed", False),
    ],
)
def test_sms_gateway_status_maps_to_code_and_permanence(sms_gateway, status: int, code: str, permanent: bool) -> None:
    gateway = sms_gateway(status)
    with pytest.raises(DeliveryError) as caught:
        SmsGatewayChannel(gateway.url, "gw-token", timeout=5).send(a_message(to="+33612345678"))
    assert (caught.value.code, caught.value.permanent) == (code, permanent)


def test_sms_gateway_not_listening_is_transient() -> None:
    channel = SmsGatewayChannel(f"http://127.0.0.1:{free_port()}/v1/sms", None, timeout=5)
    with pytest.raises(DeliveryError) as caught:
        channel.send(a_message(to="+33612345678"))
    assert (caught.value.code, caught.value.permanent) == ("sms_gateway_unavailable", False)


@pytest.mark.parametrize("number", ["0612345678", "+0612345678", "+33 6 12 34 56 78", "+336123456789012345", "+33612345678\n"])
def test_phone_number_not_in_e164_is_rejected_permanently_before_any_request(sms_gateway, number: str) -> None:
    gateway = sms_gateway(202)
    with pytest.raises(DeliveryError) as caught:
        SmsGatewayChannel(gateway.url, None, timeout=5).send(a_message(to=number))
    assert (caught.value.code, caught.value.permanent) == ("invalid_address", True)
    assert gateway.requests == []


# --- Log sink and settings -------------------------------------------------------------------------------------------


def test_log_sink_appends_one_json_line_per_message(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "notifications.log")
    sink.send(a_message(key="k1", body="ligne 1\nligne 2"))
    sink.send(a_message(key="k2", to="+33612345678"))

    lines = (tmp_path / "notifications.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"at", "channel", "to", "subject", "body", "idempotency_key"}
    assert first["channel"] == "log"
    assert (first["idempotency_key"], first["to"], first["subject"], first["body"]) == (
        "k1",
        "patient@example.org",
        "Nouveau document",
        "ligne 1\nligne 2",
    )
    assert (second["idempotency_key"], second["to"]) == ("k2", "+33612345678")
    assert datetime.datetime.fromisoformat(first["at"]).tzinfo is not None


def test_log_sink_creates_parent_folders_and_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "notifications.log"
    LogSink(path).send(a_message())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_channels_from_settings_without_configuration_is_only_the_log_sink(tmp_path: Path) -> None:
    channels = channels_from_settings(Settings(home=tmp_path / "home"))

    assert list(channels) == ["log"]
    assert isinstance(channels["log"], LogSink)
    assert channels["log"].path == tmp_path / "home" / "notifications.log"


def test_channels_from_settings_with_smtp_and_sms_configured_has_all_three(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", smtp_host="smtp.example.org", sms_gateway_url="https://sms.example.org/v1/sms")
    channels = channels_from_settings(settings)

    assert set(channels) == {"email", "sms", "log"}
    assert isinstance(channels["email"], SmtpChannel)
    assert isinstance(channels["sms"], SmsGatewayChannel)
    assert all(isinstance(channel, Channel) and channel.name == name for name, channel in channels.items())


@pytest.mark.parametrize(
    "url", ["http://sms.example.org/v1/sms", "http://127.0.0.1.example.org/send", "http://127.0.0.1:80@sms.example.org/send"]
)
def test_sms_gateway_url_over_http_to_another_host_is_refused_at_start_up(tmp_path: Path, monkeypatch, url: str) -> None:
    monkeypatch.setenv("DMP_SMS_GATEWAY_URL", url)
    with pytest.raises(ValidationError, match=r"DMP_SMS_GATEWAY_URL must be an https:// URL .*clear text"):
        Settings(home=tmp_path / "home")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/send", "ws://localhost/send"])
def test_sms_gateway_url_with_a_scheme_other_than_http_or_https_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="DMP_SMS_GATEWAY_URL must be an https:// URL"):
        Settings(home=tmp_path / "home", sms_gateway_url=url)


def test_sms_gateway_url_with_a_control_character_is_refused(tmp_path: Path) -> None:
    # urlsplit drops the tab and reads host 127.0.0.1; the URL must not pass as loopback on that reading.
    with pytest.raises(ValidationError, match="DMP_SMS_GATEWAY_URL must not contain spaces or control characters"):
        Settings(home=tmp_path / "home", sms_gateway_url="http://sms.example.org\t@127.0.0.1/send")


@pytest.mark.parametrize("url", ["https://", "http:///send", "sms.example.org/send"])
def test_sms_gateway_url_without_a_host_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="DMP_SMS_GATEWAY_URL has no host"):
        Settings(home=tmp_path / "home", sms_gateway_url=url)


def test_smtp_login_without_starttls_or_implicit_tls_to_another_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DMP_SMTP_USERNAME is set but DMP_SMTP_STARTTLS and DMP_SMTP_SSL are both off"):
        Settings(home=tmp_path / "home", smtp_host="smtp.example.org", smtp_username=USER, smtp_password=PASSWORD, smtp_starttls=False)


def test_a_refused_configuration_does_not_echo_passwords_or_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(
            home=tmp_path / "home",
            smtp_host="smtp.example.org",
            smtp_username=USER,
            smtp_password="smtp-s3cret",
            smtp_starttls=False,
            sms_gateway_token="sms-s3cret",
        )
    assert "s3cret" not in str(caught.value)
