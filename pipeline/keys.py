"""Master keys: the key file, data-key wrapping and the keyed hash secret.

The key file holds master keys (KEKs) by id, which one is active, and a separate secret for
the keyed hash (HMAC-SHA-256) kept in the index. It is created with mode 0600 on first run and
refused if group or world can read it. Keys never enter the index or the repository.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_WRAP_NONCE = 12


class KeyFileError(Exception):
    """The key file is missing, unreadable, malformed or too permissive."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str
    blob: bytes


@dataclass(frozen=True)
class Keyring:
    """Master keys by id (one active) and the HMAC secret."""

    master_keys: dict[str, bytes]
    active_id: str
    hmac_secret: bytes

    def new_data_key(self) -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        """Encrypt a data key under the active master key, bound to `context` (an id, never patient data)."""
        nonce = secrets.token_bytes(_WRAP_NONCE)
        blob = nonce + AESGCM(self.master_keys[self.active_id]).encrypt(nonce, data_key, _aad(context))
        return WrappedKey(self.active_id, blob)

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        kek = self.master_keys.get(wrapped.key_id)
        if kek is None:
            raise KeyFileError(f"master key {wrapped.key_id!r} is not in the keyring")
        nonce, body = wrapped.blob[:_WRAP_NONCE], wrapped.blob[_WRAP_NONCE:]
        return AESGCM(kek).decrypt(nonce, body, _aad(context))

    def hasher(self) -> hmac.HMAC:
        """A fresh keyed hash (HMAC-SHA-256) for plaintext digests stored in the index."""
        return hmac.new(self.hmac_secret, digestmod=hashlib.sha256)


def _aad(context: str) -> bytes:
    return b"dmp-dek-v1|" + context.encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create_key_file(path: Path) -> None:
    """Write a new key file with one master key and an HMAC secret, mode 0600, never overwriting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "format": 1,
        "active": "k1",
        "master_keys": {"k1": _b64(secrets.token_bytes(32))},
        "hmac_secret": _b64(secrets.token_bytes(32)),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle)


def load_keyring(path: Path, create: bool = False) -> Keyring:
    """Read the key file (creating it first when `create` and it does not exist)."""
    if create and not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            create_key_file(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} is readable by group or others; run: chmod 600 {path}")
    try:
        content = json.loads(path.read_text())
        keys = {kid: base64.b64decode(value) for kid, value in content["master_keys"].items()}
        keyring = Keyring(keys, content["active"], base64.b64decode(content["hmac_secret"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"key file {path} is malformed ({type(exc).__name__})") from None
    if keyring.active_id not in keys or any(len(k) != 32 for k in keys.values()):
        raise KeyFileError(f"key file {path} is malformed (bad active id or key length)")
    return keyring
