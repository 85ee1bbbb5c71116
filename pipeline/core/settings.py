"""Configuration: one settings object, read once from the `DMP_*` environment and passed in.

Unset broker, database and storage mean the embedded default: dramatiq's StubBroker with an
in-process worker, SQLite under `.dmp/` and a file-system object store under `.dmp/objects/`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Host names that always mean this machine; loopback addresses are recognised by ipaddress.
_LOOPBACK_NAMES = frozenset({"localhost"})


class Settings(BaseSettings):
    """Every knob of the pipeline. Construct once at the edge (CLI, worker entry) and pass it down."""

    # Errors must not echo their input: a check across fields would print every setting, passwords and tokens included.
    model_config = SettingsConfigDict(env_prefix="DMP_", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(default=Path(".dmp"), description="Embedded-mode data folder.")
    broker_url: str | None = Field(default=None, description="redis://… ; unset = in-process StubBroker.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite under home.")
    storage_url: str | None = Field(default=None, description="s3://bucket or file:///path; unset = home/objects.")
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL (MinIO, moto); else AWS default.")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    s3_timeout_seconds: int = Field(default=30, description="S3 connect/read timeout before a retry.")
    s3_max_connections: int = Field(default=64, ge=1, description="Kept-alive S3 connections per process.")
    api_threads: int = Field(default=8, ge=1, description="Requests an API process works on at once (its thread pool).")
    db_pool_size: int = Field(
        default=16, ge=1, description="PostgreSQL connections kept open per process; up to as many again are opened under load."
    )
    key_file: Path | None = Field(default=None, description="Master key file; unset = home/keys.json.")
    kms_key_id: str | None = Field(default=None, description="AWS KMS key id/ARN holding the master key; unset = key file.")
    kms_endpoint: str | None = Field(default=None, description="KMS endpoint URL (else AWS default).")

    jwt_issuer: str = Field(default="dmp-embedded", description="Expected `iss` of API tokens.")
    jwt_audience: str = Field(default="dmp-api", description="Expected `aud` of API tokens.")
    oidc_jwks_url: str | None = Field(default=None, description="JWKS URL of the identity provider; unset = embedded signing key.")
    jwt_signing_key_file: Path | None = Field(default=None, description="Embedded Ed25519 signing key; unset = home/jwt-signing.pem.")
    # The web portal's sign-in (api/portal/oidc.py): OpenID Connect authorization code with PKCE. Unset issuer = no
    # provider; then, in embedded mode and to a visitor on this machine only, the demo identities.
    portal_oidc_issuer: str | None = Field(default=None, description="OpenID provider (its /.well-known/openid-configuration).")
    portal_oidc_client_id: str = Field(default="dmp-portal", description="The portal's client id at the provider.")
    portal_oidc_client_secret: str | None = Field(default=None, description="The portal's client secret (unset: a public client).")
    max_file_bytes: int = Field(default=200 * 1024 * 1024, description="Largest accepted document.")
    archive_max_uncompressed_bytes: int = Field(default=4 * 1024**3, ge=0, description="Largest total uncompressed size of a batch zip.")
    archive_max_entries: int = Field(default=100_000, ge=1, description="Most entries a batch zip may list.")
    archive_max_ratio: float = Field(
        default=500.0, gt=1, description="Largest compression ratio of a zip entry (1 MiB and more) or of the whole zip."
    )
    ingest_max_queued: int = Field(default=10_000, ge=0, description="Queued documents and feed chunks past which submissions get 429.")
    ingest_retry_after_seconds: int = Field(default=30, ge=1, description="Retry-After of a 429 when the queue is full.")
    upload_max_request_bytes: int = Field(default=2 * 1024**3, ge=1, description="Largest HTTP submission (checked while streaming).")
    pdf_max_pages: int = Field(default=2000, description="More pages is pdf_too_large.")
    pdf_max_decompressed_bytes: int = Field(default=256 * 1024 * 1024, description="More decompressed stream bytes is pdf_too_large.")
    image_max_pixels: int = Field(
        default=178_956_970,
        ge=1,
        description="More pixels in an image (or an image of a PDF) is image_too_large (pdf_too_large); default: Pillow's bomb limit.",
    )
    validation_sandbox: bool = Field(default=True, description="Inspect bytes in a limited child process.")
    validation_timeout_seconds: float = Field(default=30.0, description="Per-document inspection time limit.")
    validation_memory_bytes: int = Field(default=1024 * 1024 * 1024, description="Address-space limit of the inspector.")
    segment_bytes: int = Field(default=256 * 1024, description="Encryption segment size.")
    quarantine_days: int = Field(default=7, description="Days a rejected document is kept (encrypted).")

    intake_retries: int = Field(default=8, description="Attempts per file when storage or broker fail during intake.")
    max_attempts: int = Field(default=5, description="Processing starts before an item is set aside.")
    max_retries: int = Field(default=8, description="Retries of a failure that is neither bad input nor an outage.")
    min_backoff_ms: int = Field(default=500, ge=1, description="First retry delay; also the first wait for a service that is down.")
    max_backoff_ms: int = Field(default=30_000, ge=1, description="Longest retry delay; also the longest wait between tries of a service.")
    claim_lease_seconds: float = Field(
        default=15.0, gt=0, description="A processing claim its worker has not renewed for this long is a dead worker's: sent again."
    )
    broker_heartbeat_timeout_ms: int = Field(
        default=60_000, description="Silence after which a worker is dead and its messages are redelivered."
    )
    broker_maintenance_chance: int = Field(default=1000, description="Broker commands out of a million that run dead-worker maintenance.")
    queue_name: str = "dmp.documents"
    # Operations (pipeline/operations, README "Operate").
    stuck_after_seconds: float = Field(default=1800.0, gt=0, description="An item processing longer than this counts as stuck.")
    worker_metrics_port: int | None = Field(default=None, description="`dmp worker` serves its processes' /metrics on this port.")
    worker_metrics_host: str = Field(default="127.0.0.1", description="Address of the workers' /metrics (0.0.0.0 in a container).")
    log_format: Literal["json", "text", "auto"] = Field(default="auto", description="Log lines as JSON, text, or text on a terminal only.")
    feed_chunk_lines: int = Field(default=10_000, description="Feed lines per chunk (one worker message each).")

    # Notifications (pipeline/notify). No channel configured: messages go to the local log sink.
    smtp_host: str | None = Field(default=None, description="SMTP server for email notifications; unset = no email channel.")
    smtp_port: int = 587
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS (refuse to send if the server cannot)."
    )
    smtp_ssl: bool = Field(default=False, description="Implicit TLS (SMTPS, usually port 465) instead of STARTTLS.")
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = Field(default="Mon espace santé <no-reply@dmp.invalid>", description="From: of notification emails.")
    smtp_timeout_seconds: float = 20.0
    sms_gateway_url: str | None = Field(default=None, description="HTTP endpoint of the SMS gateway; unset = no SMS channel.")
    sms_gateway_token: str | None = Field(default=None, description="Bearer token for the SMS gateway.")
    sms_timeout_seconds: float = 10.0
    notify_log_file: Path | None = Field(default=None, description="Local log sink (JSON lines); unset = home/notifications.log.")
    notify_coalesce_seconds: int = Field(default=300, ge=0, description="Deposits for one patient within this window become one message.")
    notify_lease_seconds: int = Field(default=120, ge=1, description="A message claimed longer than this by a dead worker is sent again.")
    notify_max_attempts: int = Field(default=12, ge=1, description="Delivery attempts on a failing channel before the message is failed.")
    notify_sweep_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between two notification passes of a worker or API process."
    )
    notify_keep_days: int = Field(default=90, ge=1, description="Sent or failed messages are deleted by retention after this many days.")
    notify_in_api: bool = Field(default=True, description="API processes also send notifications (emergency ones at once).")
    notify_record_url: str = Field(default="https://dmp.invalid/record", description="Link to the record put in every message.")

    @field_validator("sms_gateway_url")
    @classmethod
    def _sms_gateway_url_is_encrypted(cls, url: str | None) -> str | None:
        """https:// to any host, http:// only to this machine: the gateway gets the bearer token and patients' numbers."""
        if not url:  # unset or empty: no SMS channel
            return url
        if not url.isprintable() or any(c.isspace() for c in url):
            raise ValueError("DMP_SMS_GATEWAY_URL must not contain spaces or control characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsing the port raises on a malformed one
        except ValueError:
            raise ValueError("DMP_SMS_GATEWAY_URL is not a valid URL") from None
        if not parts.hostname:
            raise ValueError("DMP_SMS_GATEWAY_URL has no host (expected https://host/path)")
        if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
            return url
        raise ValueError(
            "DMP_SMS_GATEWAY_URL must be an https:// URL (http:// only to 127.0.0.0/8, ::1 or localhost): "
            "the gateway is sent the bearer token and patients' phone numbers, which must not travel in clear text"
        )

    # The checks below make a mistyped URL one line naming its setting (never its value: it may hold a
    # password) instead of a traceback from deep in the driver on first use.

    @field_validator("database_url")
    @classmethod
    def _database_url_is_usable(cls, url: str | None) -> str | None:
        """A URL SQLAlchemy parses, for a database whose driver is installed."""
        if not url:
            return url
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        expected = "expected postgresql+psycopg://user:password@host/db or sqlite:///path"
        try:
            dialect = make_url(url).get_dialect()  # an unknown database or driver name is an ArgumentError too
        except ArgumentError:
            raise ValueError(f"not a database URL ({expected})") from None
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            raise ValueError(f"its database driver is not installed ({exc.name}; {expected})") from None
        return url

    @field_validator("storage_url")
    @classmethod
    def _storage_url_is_usable(cls, url: str | None) -> str | None:
        if not url:
            return url
        parts = urlsplit(url)
        if (parts.scheme == "s3" and parts.netloc) or (parts.scheme == "file" and parts.path):
            return url
        raise ValueError("must be s3://bucket or file:///path")

    @field_validator("broker_url")
    @classmethod
    def _broker_url_is_usable(cls, url: str | None) -> str | None:
        parts = urlsplit(url or "")
        if url and not ((parts.scheme in ("redis", "rediss") and parts.netloc) or (parts.scheme == "unix" and parts.path)):
            raise ValueError("must be redis://host:6379/0 (or rediss://host…, unix:///path)")
        return url

    @field_validator("s3_endpoint", "kms_endpoint")
    @classmethod
    def _endpoint_is_usable(cls, url: str | None) -> str | None:
        parts = urlsplit(url or "")
        if url and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _smtp_login_is_encrypted(self) -> Self:
        """An SMTP login (DMP_SMTP_USERNAME) goes over TLS unless the server is on this machine."""
        cleartext = not (self.smtp_starttls or self.smtp_ssl)
        if self.smtp_host and self.smtp_username is not None and cleartext and not is_loopback_host(self.smtp_host):
            raise ValueError(
                "DMP_SMTP_USERNAME is set but DMP_SMTP_STARTTLS and DMP_SMTP_SSL are both off: the SMTP login "
                "to a server other than this machine would send the password in clear text; turn one of them on"
            )
        return self

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    def embedded_index_file(self) -> Path:
        """The SQLite index in the home, used when DMP_DATABASE_URL is unset."""
        return self.home / "index.sqlite3"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.embedded_index_file().resolve()}"

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.home / "objects").resolve().as_uri()

    def resolved_signing_key_file(self) -> Path:
        return self.jwt_signing_key_file or self.home / "jwt-signing.pem"

    def resolved_notify_log_file(self) -> Path:
        return self.notify_log_file or self.home / "notifications.log"

    def resolved_key_file(self) -> Path:
        return self.key_file or self.home / "keys.json"


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, without brackets) is this machine: localhost, 127.0.0.0/8 or ::1."""
    host = host.lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
