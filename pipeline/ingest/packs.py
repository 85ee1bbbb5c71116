"""The intake's packs: the small documents of a batch stored a few at a time, one inbox object and
one message per pack, instead of one object and one message per document.

A pack is a zip without compression (`inbox/packs/<id>`) whose entries are named by item id; its
items point at it (`inbox_key`, `inbox_member`) as items of an uploaded zip do, so the workers read
them, and the pack is deleted once none of its items still waits, by the same code. A worker reads
a whole pack in one GET (Inbox.holding) and takes its items as one micro-batch
(pipeline/documents/batching.py). The message carries the item ids, never bytes.

Crash safety is the intake's: the items' rows are moved to the pack (committed) before the pack is
stored, and its message is sent after. An intake that dies in between leaves rows pointing at a
pack that does not exist: running it again finds the object missing and packs those items anew.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.core.inbox import PACK_BYTES, PACK_DOCUMENTS, PACK_PREFIX, ZIP_ENTRY_ERRORS, LimitedReader
from pipeline.core.reasons import REASONS
from pipeline.index import repo
from pipeline.index.base import new_id
from pipeline.index.models import BatchItem
from pipeline.ingest.batch import BatchReader
from pipeline.runtime import Runtime

# A document up to this size may go in a pack; a larger one is stored alone, as it streams.
PACK_MEMBER_BYTES = 1024 * 1024
# Room kept in a pack for the zip's own headers and directory (about 150 bytes per entry).
PACK_OVERHEAD = 64 * 1024
# A batch goes out in at least this many messages when it can, so that a small one still reaches
# every worker thread (and its progress, and a killed worker's loss, stay in small steps).
MIN_MESSAGES = 16


@dataclass
class Packer:
    """Collects small documents of one batch and stores them as packs, sending one message each."""

    rt: Runtime
    reader: BatchReader
    send_many: Callable[[list[str]], None]
    members: list[tuple[str, bytes]] = field(default_factory=list)  # item id, bytes
    size: int = 0
    key: str = ""  # the current pack's, chosen with its first document: a retried flush reuses it
    per_pack: int = PACK_DOCUMENTS

    def spread_over(self, documents: int) -> None:
        """Size the packs for a batch of `documents`: up to PACK_DOCUMENTS each, in MIN_MESSAGES packs at least."""
        self.per_pack = max(1, min(PACK_DOCUMENTS, documents // MIN_MESSAGES))

    def read_small(self, item: BatchItem) -> bytes | bool:
        """The document's bytes if it is small enough for a pack; True if it is not (store it alone);
        False if it was rejected (too large, or a zip entry that cannot be read back)."""
        limit = min(PACK_MEMBER_BYTES, self.rt.settings.max_file_bytes)
        try:
            with self.reader.open(item.file) as source:
                data = LimitedReader(source, self.rt.settings.max_file_bytes).read(limit + 1)
        except (LimitedReader.TooLarge, *ZIP_ENTRY_ERRORS) as exc:
            reason = "file_too_large" if isinstance(exc, LimitedReader.TooLarge) else "archive_entry_corrupt"
            with self.rt.sessions() as session:
                repo.commit_rejected(session, None, item.id, reason, REASONS[reason], None)
            return False
        return True if len(data) > limit else data

    def fits(self, size: int) -> bool:
        """Whether a document of `size` bytes still goes in the current pack."""
        return len(self.members) < self.per_pack and self.size + size <= PACK_BYTES - PACK_OVERHEAD

    def add(self, item_id: str, data: bytes) -> None:
        self.key = self.key or f"{PACK_PREFIX}{new_id()}"
        self.members.append((item_id, data))
        self.size += len(data)

    @property
    def full(self) -> bool:
        return len(self.members) >= self.per_pack

    def flush(self) -> list[str]:
        """Store the pack and send its message; returns its item ids. Safe to call again after a
        failure (the same rows, the same object, the same message)."""
        if not self.members:
            return []
        ids = [item_id for item_id, _ in self.members]
        with self.rt.sessions() as session:
            repo.relocate_many(session, [(item_id, self.key, item_id) for item_id in ids])
        self.rt.store.put(self.key, io.BytesIO(pack_bytes(self.members)))
        self.send_many(ids)
        self.members, self.size, self.key = [], 0, ""
        return ids


def pack_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A zip without compression holding each (name, bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()
