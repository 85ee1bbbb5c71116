"""Index fields sealed at rest: values no query looks up, encrypted under the key of whom they are about.

A document's title ("Synthèse psychiatrique"), a person's email and phone number tell medical facts
or reach a person: a dump of the index must not show them. Each is kept as AES-256-GCM ciphertext
(`nonce || ciphertext || tag`) under:

- the patient's record key for what belongs to a record (document titles, the care history's acts
  and professionals, the patient's contact, the medical profile and emergency contacts the patient
  wrote): destroying the record key shreds them with the record;
- a batch key (one per batch, wrapped by the master key) for the titles of items waiting in the queue,
  whose patient may not exist yet; the title moves under the record key when the item is indexed
  and is dropped from the item once it is final;
- a key of its own (wrapped by the master key) for a professional's contact, which belongs to no record.

An audit entry's break-glass justification (`audit_entries.justification_sealed`) is sealed under the
record key of its chain's patient (pipeline/access/audit.py).

A message's address (`notifications.address_sealed`) is sealed under its recipient's contact key.

The associated data names the field and the row (`document.title|doc:<id>|patient:<id>`): a value
copied into another row or field does not open. Values are padded to a multiple of PAD bytes, so a
title's length does not single it out among titles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar, overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12
_AAD = b"dmp-field-v1|"
PAD = 32
KEY_CACHE_SECONDS = 300.0


class SealedFieldError(Exception):
    """A sealed value does not open with this key in this place (wrong key, moved, or altered)."""


def _pad(data: bytes) -> bytes:
    # ISO/IEC 7816-4: a 0x80 byte, then zeros up to the next multiple of PAD.
    padded = data + b"\x80"
    return padded + b"\0" * (-len(padded) % PAD)


def _unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\0")
    if not stripped.endswith(b"\x80"):
        raise SealedFieldError("bad padding")
    return stripped[:-1]


class Sealer:
    """Seals and opens values under one key; keep one for many values (the cipher is set up once)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @overload
    def seal(self, text: str, context: str) -> bytes: ...

    @overload
    def seal(self, text: None, context: str) -> None: ...

    def seal(self, text: str | None, context: str) -> bytes | None:
        """`text` encrypted, bound to `context` (ids only, never patient data); None stays None."""
        if text is None:
            return None
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, _pad(text.encode()), _AAD + context.encode())

    def open(self, blob: bytes | None, context: str) -> str | None:
        """The text `seal` sealed; SealedFieldError if it does not open with this key and context."""
        if blob is None:
            return None
        try:
            return _unpad(self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _AAD + context.encode())).decode()
        except (InvalidTag, ValueError):
            raise SealedFieldError("sealed value does not open here") from None


def seal_text(key: bytes, text: str | None, context: str) -> bytes | None:
    """`text` encrypted under `key`, bound to `context`; None stays None (one value: see Sealer for many)."""
    return Sealer(key).seal(text, context)


def open_text(key: bytes, blob: bytes | None, context: str) -> str | None:
    """The text `seal_text` sealed; SealedFieldError if it does not open with this key and context."""
    return Sealer(key).open(blob, context)


# Where each sealed value lives: the field and the ids of its row.


def document_title_context(document_id: str, patient_id: str) -> str:
    return f"document.title|doc:{document_id}|patient:{patient_id}"


def item_title_context(item_id: str) -> str:
    return f"batch_item.title|item:{item_id}"


def contact_context(contact_id: str, field: str) -> str:
    return f"contact.{field}|contact:{contact_id}"


def care_details_context(source: str, line_id: str, patient_id: str) -> str:
    return f"care_event.details|source:{source}|line:{line_id}|patient:{patient_id}"


def section_context(kind: str, patient_id: str) -> str:
    """What the patient wrote besides documents (medical profile, emergency contacts): one per record and kind."""
    return f"patient_section.content|kind:{kind}|patient:{patient_id}"


def justification_context(chain: str, seq: int) -> str:
    """An audit entry's break-glass justification: the entry is its position (chain = patient id, seq)."""
    return f"audit_entry.justification|patient:{chain}|seq:{seq}"


def address_context(notification_id: str, recipient_id: str) -> str:
    return f"notification.address|notification:{notification_id}|recipient:{recipient_id}"


# Contexts of the keys wrapped directly by a master key.


def batch_key_context(batch_id: str) -> str:
    return f"batch:{batch_id}"


def contact_key_context(contact_id: str) -> str:
    return f"contact:{contact_id}"


def quarantine_key_context(item_id: str) -> str:
    """The context a rejected item's quarantine copy is sealed in, its data key wrapped by a master key."""
    return f"quarantine:{item_id}"


Opened = TypeVar("Opened")


class KeyCache(Generic[Opened]):
    """Unwrapped keys by id for a few minutes, so a worker unwraps a batch's key once, not per item (or what is
    set up from a key: a record key's LineSealer, made once per feed worker, not per chunk)."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._keys: dict[str, tuple[float, Opened]] = {}
        self._prune_above = 10_000
        self._lock = threading.Lock()

    def kept(self, key_ids: Iterable[str]) -> dict[str, Opened]:
        """Those of `key_ids` held and not expired, by id: many at once (a feed chunk's ~8,000 patients' sealers)."""
        now = time.monotonic()
        found: dict[str, Opened] = {}
        with self._lock:
            keys = self._keys
            for key_id in key_ids:  # one pass, no pair made per id: ~8 ms a chunk as a list of pairs, then a dict
                cached = keys.get(key_id)
                if cached is not None and cached[0] > now:
                    found[key_id] = cached[1]
        return found

    def get(self, key_id: str, unwrap: Callable[[], Opened]) -> Opened:
        with self._lock:
            cached = self._keys.get(key_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        key = unwrap()
        with self._lock:
            if len(self._keys) > self._prune_above:  # a long-running worker sees many batches: drop the expired ones
                now = time.monotonic()
                self._keys = {k: v for k, v in self._keys.items() if v[0] > now}
                # Not again before the live ones have doubled: a feed's 20,000 patients' sealers, all live, made a
                # pass over them per key added past 10,000.
                self._prune_above = max(10_000, 2 * len(self._keys))
            self._keys[key_id] = (time.monotonic() + self.seconds, key)
        return key


# A care history line: what it says of the care, sealed under the patient's record key (pipeline/carehistory/history.py).
# The sealed part of a line, in this order.
DETAILS = ("act_code", "act_label", "professional_id", "professional_name", "profession")
CareDetails = tuple[str, str, str, str, str]  # the DETAILS of a line, in that order


class LineSealer:
    """Seals a patient's care lines and keys their content hashes, under the patient's record key."""

    def __init__(self, record_key: bytes) -> None:
        self._sealer = Sealer(record_key)
        # The hash key is derived, so the record key never serves two primitives.
        self._hash_key = hmac.new(record_key, b"dmp-care-line-hash-v1", hashlib.sha256).digest()

    def seal(self, source: str, line_id: str, patient_id: str, details: Sequence[str]) -> bytes:
        """The DETAILS of a line, for `care_events.details_sealed`."""
        return self._sealer.seal(json.dumps(list(details), ensure_ascii=False), care_details_context(source, line_id, patient_id))

    def open(self, source: str, line_id: str, patient_id: str, sealed: bytes) -> CareDetails:
        """The DETAILS `seal` sealed; SealedFieldError if they do not open here."""
        details = json.loads(self._sealer.open(sealed, care_details_context(source, line_id, patient_id)) or "[]")
        if not isinstance(details, list) or len(details) != len(DETAILS):
            raise SealedFieldError("care details of another shape")
        act_code, act_label, professional_id, professional_name, profession = details
        return act_code, act_label, professional_id, professional_name, profession

    def line_hash(self, digest: str) -> str:
        """The stored form of a line's content digest: keyed, so a dump cannot confirm a guessed line,
        and two sends of the same line to the same patient still match."""
        return hmac.new(self._hash_key, digest.encode(), hashlib.sha256).hexdigest()
