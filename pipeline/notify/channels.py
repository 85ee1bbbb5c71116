"""Delivery channels for patient notifications: email over SMTP, SMS through an HTTP gateway, a local log sink.

A channel sends one already-composed `Message` and either returns (delivered, or at least accepted by the
next hop) or raises `DeliveryError`, whose `permanent` flag tells the outbox whether a retry can help.
Retries resend the same `idempotency_key`: the SMS gateway de-duplicates on it, and email carries a
Message-ID derived from it, so a resend after a crash between "accepted" and "recorded as sent" can be
recognised as the same message by receivers (the documented double-email window).

Channels hold no per-message state and may be shared between threads.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import re
import smtplib
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from ssl import create_default_context
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx

from pipeline.index.states import ChannelName

if TYPE_CHECKING:
    from pipeline.core.settings import Settings

# Three concatenated SMS of 153 GSM-7 characters each.
_SMS_MAX_CHARS = 459

# Server replies are kept in error details for the operator, cut short so a chatty server cannot bloat logs.
_REPLY_CHARS = 200

# local@domain: no whitespace or control characters (CR/LF would inject headers or SMTP commands), and none of
# the characters that make an address header a list or a group (a comma would add a second recipient).
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\.]+(?:\.[^\s@<>()\[\],;:\"\\.]+)*")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
# RFC 5322 dot-atom-text: what may stand left of the "@" in a Message-ID without quoting.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Visible ASCII: what an HTTP header value can carry as is.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
# Line breaks and other control characters: never allowed to reach an email header.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
# Enhanced status code (RFC 3463) at the start of an SMTP reply text: "5.1.1 no such user".
_ENHANCED_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")

_MESSAGE_ID_DOMAIN = "dmp.notifications"


@dataclass(frozen=True)
class Message:
    """One notification ready to go out on one channel.

    idempotency_key: stable per (notification, channel); the same value on every retry.
    to: an email address or an E.164 phone number ("+33612345678").
    subject: short; the email subject (SMS ignores it).
    body: plain text, never medical content (composed elsewhere).
    """

    idempotency_key: str
    to: str
    subject: str
    body: str


class DeliveryError(Exception):
    """A message was not delivered.

    code: a stable snake_case code (smtp_unavailable, smtp_recipient_refused, sms_gateway_unavailable,
    sms_number_rejected, ...). permanent: True when retrying cannot succeed (the address is rejected),
    False when a later retry may (server down, throttled, misconfigured credentials). detail: for the
    operator; never contains the message body.
    """

    def __init__(self, code: str, permanent: bool, detail: str = "") -> None:
        super().__init__(code, permanent, detail)
        self.code = code
        self.permanent = permanent
        self.detail = detail

    def __str__(self) -> str:
        kind = "permanent" if self.permanent else "transient"
        return f"{self.code} ({kind}): {self.detail}" if self.detail else f"{self.code} ({kind})"


@runtime_checkable
class Channel(Protocol):
    """A way to reach a patient. `send` returns on success and raises DeliveryError otherwise, never anything else."""

    name: ChannelName

    def send(self, message: Message) -> None: ...


class SmtpChannel:
    """Email through an SMTP submission server, one connection per message.

    starttls: upgrade the connection and refuse to send if the server does not offer STARTTLS (never fall back
    to clear text). ssl: implicit TLS (SMTPS) from the first byte; `starttls` is then irrelevant. ssl_context:
    the TLS settings and trusted certificates (default: the system's, with hostname checking).
    """

    name = ChannelName.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = True,
        ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        envelope_sender = email.utils.parseaddr(sender)[1]
        # A bad sender is a configuration error: fail when the channel is built, not on every message.
        if _HEADER_BREAKS.search(sender) or not _EMAIL.fullmatch(envelope_sender):
            raise ValueError("SMTP sender must be an address such as 'Name <no-reply@example.org>'")
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.ssl = ssl
        self.username = username
        self.password = password
        self.timeout = timeout
        self._envelope_sender = envelope_sender
        # Built once: loading the system trust store on every message would cost more than the handshake.
        self._ssl_context = ssl_context or create_default_context()

    def send(self, message: Message) -> None:
        """Hand the message to the SMTP server; returns once the server accepted it for delivery."""
        to = _checked_email(message.to)
        try:
            email_message = self._compose(message, to)
        except Exception as exc:  # header encoding of odd input: not retryable, and not the server's fault
            raise DeliveryError("invalid_message", permanent=True, detail=f"cannot build the email: {type(exc).__name__}") from exc
        stage = "connect"
        smtp: smtplib.SMTP | None = None
        try:
            if self.ssl:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._ssl_context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            if self.starttls and not self.ssl:
                stage = "starttls"
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        "smtp_starttls_unavailable", permanent=False, detail="the server does not offer STARTTLS; not sending in clear text"
                    )
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo_or_helo_if_needed()
            if self.username is not None:
                stage = "login"
                smtp.login(self.username, self.password or "")
            stage = "send"
            smtp.send_message(email_message, from_addr=self._envelope_sender, to_addrs=[to])
        except DeliveryError:
            _close(smtp)
            raise
        except Exception as exc:
            _close(smtp)
            raise _smtp_error(exc, stage, to) from exc
        # The server has accepted the message: whatever QUIT does now must not turn the delivery into a
        # failure, or the retry would send a second email.
        with contextlib.suppress(Exception):
            smtp.quit()
        _close(smtp)

    def _compose(self, message: Message, to: str) -> EmailMessage:
        email_message = EmailMessage()
        email_message["From"] = self.sender
        email_message["To"] = to
        email_message["Subject"] = _header_text(message.subject)
        email_message["Date"] = email.utils.formatdate(usegmt=True)
        email_message["Message-ID"] = _message_id(message.idempotency_key)
        # RFC 3834: tells vacation responders and ticket systems not to answer a machine.
        email_message["Auto-Submitted"] = "auto-generated"
        # Quoted-printable keeps the body 7-bit clean whatever the text, so servers without 8BITMIME take it too.
        email_message.set_content(message.body, charset="utf-8", cte="quoted-printable")
        return email_message


class SmsGatewayChannel:
    """SMS through an HTTP gateway: POST {"to", "text"} as JSON, with Idempotency-Key so a resend is not sent twice.

    One httpx.Client (thread-safe, keeps connections alive) per channel. `transport` lets tests or a proxy
    setup replace the network layer.
    """

    name = ChannelName.SMS

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Redirects are not followed: a gateway that moved is a configuration problem, and following one
        # would hand the bearer token and the patient's number to wherever it points.
        self._client = httpx.Client(timeout=timeout, transport=transport, headers=headers, follow_redirects=False)

    def send(self, message: Message) -> None:
        """POST the SMS to the gateway; returns when it answered 2xx."""
        to = _checked_phone(message.to)
        payload = {"to": to, "text": _sms_text(message.body)}
        headers = {"Idempotency-Key": _header_key(message.idempotency_key)}
        try:
            response = self._client.post(self.url, json=payload, headers=headers)
        except Exception as exc:  # transport errors, timeouts, and anything else httpx may raise
            raise DeliveryError("sms_gateway_unavailable", permanent=False, detail=type(exc).__name__) from exc
        status = response.status_code
        # The response text is left out of the detail: some gateways echo the message back.
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise DeliveryError("sms_gateway_unavailable", permanent=False, detail=f"HTTP {status}")
        if status in (400, 404, 410, 422):
            raise DeliveryError("sms_number_rejected", permanent=True, detail=f"HTTP {status}")
        if status in (401, 403):
            raise DeliveryError("sms_gateway_auth_failed", permanent=False, detail=f"HTTP {status}")
        # Redirects, 409 (same key still in flight), anything unexpected: not the number's fault.
        raise DeliveryError("sms_gateway_error", permanent=False, detail=f"HTTP {status}")


class LogSink:
    """Appends one JSON line per message to a local file (created 0600, parent folders created).

    The channel of last resort when nothing else is configured, and a record a developer can read.
    """

    name = ChannelName.LOG

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        """Append {"at", "channel": "log", "to", "subject", "body", "idempotency_key"} as one line, flushed to disk."""
        record = {
            "at": datetime.now(UTC).isoformat(),
            "channel": self.name,
            "to": message.to,
            "subject": message.subject,
            "body": message.body,
            "idempotency_key": message.idempotency_key,
        }
        # json.dumps escapes every line break inside the values, so one message is always exactly one line.
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._lock:
                # O_APPEND and one write per line: lines from several processes do not interleave.
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    written = 0
                    while written < len(line):
                        written += os.write(fd, line[written:])
                    # "Sent" is recorded after this returns: the line must survive a crash.
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise DeliveryError("log_write_failed", permanent=False, detail=f"{type(exc).__name__}: {exc.strerror}") from exc


def channels_from_settings(settings: Settings) -> dict[ChannelName, Channel]:
    """The configured channels by name: "email" if smtp_host is set, "sms" if sms_gateway_url is set, and always "log"."""
    channels: dict[ChannelName, Channel] = {}
    if settings.smtp_host:
        channels[ChannelName.EMAIL] = SmtpChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            starttls=settings.smtp_starttls,
            ssl=settings.smtp_ssl,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_seconds,
        )
    if settings.sms_gateway_url:
        gateway = SmsGatewayChannel(settings.sms_gateway_url, settings.sms_gateway_token, timeout=settings.sms_timeout_seconds)
        channels[ChannelName.SMS] = gateway
    channels[ChannelName.LOG] = LogSink(settings.resolved_notify_log_file())
    return channels


def _message_id(idempotency_key: str) -> str:
    """The Message-ID of the email for this key: the same on every resend, so receivers can de-duplicate.

    The key is used as is when it is a valid dot-atom (readable, and traceable back to the outbox); any other key
    is hashed, because replacing characters could make two keys share one Message-ID.
    """
    if _DOT_ATOM.fullmatch(idempotency_key) and len(idempotency_key) <= 128:
        left = idempotency_key
    else:
        left = "sha256." + hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{left}@{_MESSAGE_ID_DOMAIN}>"


def _sms_text(body: str) -> str:
    """The body cut to _SMS_MAX_CHARS characters, ending with "…" when it was longer."""
    if len(body) <= _SMS_MAX_CHARS:
        return body
    return body[: _SMS_MAX_CHARS - 1] + "…"


def _checked_email(address: str) -> str:
    if len(address) > 254 or not _EMAIL.fullmatch(address) or not address.isprintable():
        raise DeliveryError("invalid_address", permanent=True, detail="not an email address")
    return address


def _checked_phone(number: str) -> str:
    if not _PHONE.fullmatch(number):
        raise DeliveryError("invalid_address", permanent=True, detail="not an E.164 phone number")
    return number


def _header_text(text: str) -> str:
    # A line break in a header would start a new header (injection); the email package would also refuse it.
    return _HEADER_BREAKS.sub(" ", text).strip()


def _header_key(idempotency_key: str) -> str:
    # HTTP header values are visible ASCII; other keys are hashed (stable, and distinct keys stay distinct).
    if _HEADER_SAFE.fullmatch(idempotency_key) and len(idempotency_key) <= 200:
        return idempotency_key
    return "sha256." + hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()


def _close(smtp: smtplib.SMTP | None) -> None:
    # Closing a connection that is already gone must not hide the error being reported.
    if smtp is not None:
        with contextlib.suppress(Exception):
            smtp.close()


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return _HEADER_BREAKS.sub(" ", text).strip()[:_REPLY_CHARS]


def _concerns_recipient(code: int, text: str, *, at_rcpt: bool) -> bool:
    """Whether a 5xx reply says the recipient address cannot be delivered to (so retrying is pointless)."""
    enhanced = _ENHANCED_STATUS.match(text)
    if at_rcpt:
        # A refusal at RCPT TO is about the recipient, except policy refusals (relay denied, authentication
        # required): those say the server does not trust us, a configuration problem, not a bad address.
        return code != 530 and not (enhanced and enhanced.group(2) == "7")
    if not enhanced:
        return False
    subject, detail = int(enhanced.group(2)), int(enhanced.group(3))
    # X.1.1 bad mailbox, X.1.2 bad domain, X.1.3 bad syntax, X.1.6 moved, X.1.10 null MX; X.2.0-2 mailbox
    # unavailable/disabled/full. X.1.7 and X.1.8 are about the sender; X.2.3 is about the message size.
    return (subject == 1 and detail in (1, 2, 3, 6, 10)) or (subject == 2 and detail in (0, 1, 2))


def _reply_error(code: int, reply: bytes | str, *, at_rcpt: bool, fallback: str) -> DeliveryError:
    text = _reply_text(reply)
    detail = f"{code} {text}".strip()
    if 400 <= code < 500:
        return DeliveryError("smtp_deferred", permanent=False, detail=detail)
    if 500 <= code < 600 and _concerns_recipient(code, text, at_rcpt=at_rcpt):
        return DeliveryError("smtp_recipient_refused", permanent=True, detail=detail)
    return DeliveryError(fallback, permanent=False, detail=detail)


def _smtp_error(exc: Exception, stage: str, to: str) -> DeliveryError:
    """Map what smtplib raised at `stage` (connect, starttls, login, send) to a DeliveryError."""
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (-1, b""))
        return _reply_error(code, reply, at_rcpt=True, fallback="smtp_rejected")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # Wrong credentials are our configuration, not the patient's address: retry once it is fixed.
        return DeliveryError("smtp_auth_failed", permanent=False, detail=f"{exc.smtp_code} {_reply_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _reply_error(exc.smtp_code, exc.smtp_error, at_rcpt=False, fallback="smtp_sender_refused")
    if isinstance(exc, smtplib.SMTPDataError):
        return _reply_error(exc.smtp_code, exc.smtp_error, at_rcpt=False, fallback="smtp_rejected")
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError | smtplib.SMTPServerDisconnected):
        return DeliveryError("smtp_unavailable", permanent=False, detail=f"{name}: {_reply_text(str(exc))}")
    if stage == "starttls" and isinstance(exc, smtplib.SMTPResponseException):
        # The server advertised STARTTLS but would not start it (e.g. 454): still no clear text.
        return DeliveryError("smtp_starttls_unavailable", permanent=False, detail=f"{exc.smtp_code} {_reply_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_error(exc.smtp_code, exc.smtp_error, at_rcpt=False, fallback="smtp_rejected")
    if stage == "login" and isinstance(exc, smtplib.SMTPException):
        # AUTH not offered, or no mechanism in common (often: the server only offers AUTH after STARTTLS).
        return DeliveryError("smtp_auth_unavailable", permanent=False, detail=f"{name}: {_reply_text(str(exc))}")
    if isinstance(exc, smtplib.SMTPNotSupportedError) and stage == "send":
        # An internationalised address needs SMTPUTF8, which this server does not offer: permanent for a
        # patient's address, a configuration problem for the sender's.
        return DeliveryError("smtp_address_unsupported", permanent=not to.isascii(), detail="the server does not support SMTPUTF8")
    if isinstance(exc, ssl.SSLError):
        # Certificate not trusted, hostname mismatch, no common protocol: a configuration problem.
        return DeliveryError("smtp_tls_failed", permanent=False, detail=f"{name}: {_reply_text(str(exc))}")
    if isinstance(exc, OSError):  # refused, unreachable, timed out, DNS failure
        return DeliveryError("smtp_unavailable", permanent=False, detail=f"{name}: {_reply_text(str(exc))}")
    return DeliveryError("smtp_error", permanent=False, detail=name)
