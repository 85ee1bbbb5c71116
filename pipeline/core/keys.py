"""Keys: master keys (KEKs) behind a provider, the keyed-hash secret, and data-key wrapping.

Hierarchy (see README, "Encryption format"):

    master key (KEK, key file or KMS)  --wraps-->  record key (one per patient, in the index)
    record key                         --wraps-->  data key (one per document, in the index)

The key file holds the file provider's master keys by id (one active, the others retired but
still able to unwrap) and the separate secret of the keyed hash (HMAC-SHA-256) kept in the
index. It is created with mode 0600 and refused if group or world can read it. Keys never enter
the index in clear, nor the repository.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.core.secretfile import is_private, write_private

_NONCE = 12
# The label the audit chain key is derived under: the same for entries of every encoding version.
AUDIT_KEY_LABEL = b"dmp-audit-v1"


class KeyFileError(Exception):
    """The key file is missing, unreadable, malformed or too permissive."""


class KeyProviderError(Exception):
    """A key could not be unwrapped: unknown master key, destroyed key, or wrong context."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str  # the id of the key that wrapped it
    blob: bytes


class KeyProvider(Protocol):
    """Where master keys live. Wraps and unwraps record keys; never hands out a master key."""

    @property
    def active_id(self) -> str:
        """The master key new wraps use."""
        ...

    def wrap(self, key: bytes, context: str) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes: ...


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal_key(wrapping_key: bytes, key: bytes, context: str) -> bytes:
    """AES-256-GCM key wrap bound to `context` (ids only, never patient data)."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(wrapping_key).encrypt(nonce, key, b"dmp-key-v1|" + context.encode())


def open_key(wrapping_key: bytes, blob: bytes, context: str) -> bytes:
    try:
        return AESGCM(wrapping_key).decrypt(blob[:_NONCE], blob[_NONCE:], b"dmp-key-v1|" + context.encode())
    except InvalidTag:
        raise KeyProviderError("key does not unwrap in this context") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class KeyFile:
    """The key file's content."""

    master_keys: dict[str, bytes]
    active_id: str
    hmac_secret: bytes


def create_key_file(path: Path) -> None:
    """Write a new key file with one master key and an HMAC secret, mode 0600, never overwriting."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_new(path, KeyFile({"k1": new_key()}, "k1", secrets.token_bytes(32)), exclusive=True)


def _write_new(path: Path, content: KeyFile, exclusive: bool) -> None:
    data = {
        "format": 1,
        "active": content.active_id,
        "master_keys": {kid: _b64(key) for kid, key in content.master_keys.items()},
        "hmac_secret": _b64(content.hmac_secret),
    }
    write_private(path, json.dumps(data).encode(), replace=not exclusive)


def read_key_file(path: Path) -> KeyFile:
    try:
        private = is_private(path)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist (create it with `dmp keys init`)") from None
    if not private:
        raise KeyFileError(f"key file {path} is readable by group or others; run: chmod 600 {path}")
    try:
        content = json.loads(path.read_text())
        keys = {kid: base64.b64decode(value) for kid, value in content["master_keys"].items()}
        result = KeyFile(keys, content["active"], base64.b64decode(content["hmac_secret"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is malformed ({type(exc).__name__})") from None
    if result.active_id not in keys or any(len(k) != 32 for k in keys.values()) or len(result.hmac_secret) < 32:
        raise KeyFileError(f"key file {path} is malformed (bad active id or key length)")
    return result


def add_master_key(path: Path) -> str:
    """Add a master key to the key file and make it active (the others stay, for unwrapping)."""
    current = read_key_file(path)
    number = 1 + max((int(kid[1:]) for kid in current.master_keys if kid[1:].isdigit()), default=0)
    new_id = f"k{number}"
    _write_new(path, KeyFile({**current.master_keys, new_id: new_key()}, new_id, current.hmac_secret), exclusive=False)
    return new_id


class FileKeyProvider:
    """Master keys from the key file. Re-reads the file when asked for a key id it does not know,
    so running workers pick up a rotation made by `dmp keys rotate` elsewhere."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._content = read_key_file(path)

    @property
    def active_id(self) -> str:
        return self._content.active_id

    @property
    def hmac_secret(self) -> bytes:
        return self._content.hmac_secret

    def reload(self) -> None:
        with self._lock:
            self._content = read_key_file(self.path)

    def wrap(self, key: bytes, context: str) -> WrappedKey:
        content = self._content
        return WrappedKey(content.active_id, seal_key(content.master_keys[content.active_id], key, context))

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        if wrapped.key_id not in self._content.master_keys:
            self.reload()
        master = self._content.master_keys.get(wrapped.key_id)
        if master is None:
            raise KeyProviderError(f"master key {wrapped.key_id!r} is not in the key file")
        return open_key(master, wrapped.blob, context)


def load_key_file(path: Path, create: bool = False) -> KeyFile:
    """Read the key file, creating it first (0600) when `create` and it does not exist."""
    if create and not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            create_key_file(path)
    return read_key_file(path)


def audit_key(hmac_secret: bytes) -> bytes:
    """The audit chain key (pipeline/access/audit.py), derived from the keyed-hash secret so it is used for nothing else."""
    return hmac.new(hmac_secret, AUDIT_KEY_LABEL, hashlib.sha256).digest()


def keyed_hash(secret: bytes) -> hmac.HMAC:
    """A fresh keyed hash (HMAC-SHA-256) for plaintext digests stored in the index."""
    return hmac.new(secret, digestmod=hashlib.sha256)
