"""Reading items' raw bytes from the inbox: own objects, and entries of a zip a batch shares."""

from __future__ import annotations

import io
import zipfile
from contextlib import AbstractContextManager

import pytest

from pipeline.core.inbox import Inbox
from pipeline.core.reasons import Rejected
from pipeline.core.storage import FileStore, ObjectNotFound

ENTRIES = {f"doc-{n}.txt": f"Compte rendu {n} ".encode() * (n + 1) for n in range(5)}
KEY = "inbox/uploads/20261124T000000-x/batch.zip"


class _CountingStore(FileStore):
    def __init__(self, root) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self.ranged_opens = 0
        self.blocks: list[int] = []

    def open_ranged(self, key: str, block_bytes: int = 0, size: int | None = None) -> AbstractContextManager:  # type: ignore[override]
        self.ranged_opens += 1
        self.blocks.append(block_bytes)
        return super().open_ranged(key)


def _store_zip(store: FileStore, entries: dict[str, bytes]) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    store.put(KEY, io.BytesIO(out.getvalue()))


def test_each_entry_reads_back_as_it_was_zipped(tmp_path):
    store = FileStore(tmp_path)
    _store_zip(store, ENTRIES)
    inbox = Inbox(store)
    for name, data in ENTRIES.items():
        with inbox.open(KEY, name) as entry:
            assert entry.read() == data


def test_a_shared_zip_s_directory_is_read_once_for_all_its_entries(tmp_path):
    store = _CountingStore(tmp_path)
    _store_zip(store, ENTRIES)
    inbox = Inbox(store)
    for name in ENTRIES:
        with inbox.open(KEY, name) as entry:
            entry.read()
    assert store.ranged_opens == 1 + len(ENTRIES)  # the directory once, then one read per entry


def test_an_entry_missing_from_the_zip_is_rejected_as_corrupt(tmp_path):
    store = FileStore(tmp_path)
    _store_zip(store, ENTRIES)
    with pytest.raises(Rejected) as rejected, Inbox(store).open(KEY, "absent.txt"):
        pass
    assert rejected.value.reason == "archive_entry_corrupt"


def test_a_zip_that_is_gone_is_object_not_found(tmp_path):
    with pytest.raises(ObjectNotFound), Inbox(FileStore(tmp_path)).open(KEY, "doc-1.txt"):
        pass


def test_an_object_of_its_own_is_read_whole(tmp_path):
    store = FileStore(tmp_path)
    store.put("inbox/item", io.BytesIO(b"%PDF-1.4"))
    with Inbox(store).open("inbox/item") as raw:
        assert raw.read() == b"%PDF-1.4"


def test_a_small_entry_is_fetched_in_a_block_of_its_own_size_not_with_its_neighbours(tmp_path):
    store = _CountingStore(tmp_path)
    _store_zip(store, {"small.txt": b"x" * 100, "big.bin": bytes(range(256)) * 4096})
    with Inbox(store).open(KEY, "small.txt") as entry:
        entry.read()
    assert store.blocks[-1] < 2 * 1024  # header, name and 100 bytes (deflated), not MEMBER_BLOCK_BYTES


def test_a_held_pack_is_fetched_once_and_its_directory_parsed_once_for_all_its_entries(tmp_path, monkeypatch):
    import pipeline.core.inbox as inbox_module

    parsed: list[object] = []
    real_open_zip = inbox_module.open_zip
    monkeypatch.setattr(inbox_module, "open_zip", lambda source: parsed.append(source) or real_open_zip(source))
    store = FileStore(tmp_path)
    _store_zip(store, ENTRIES)
    inbox = Inbox(store)
    with inbox.holding([KEY]):
        for name, data in ENTRIES.items():
            with inbox.open(KEY, name) as entry:
                assert entry.read() == data
        with pytest.raises(Rejected) as rejected, inbox.open(KEY, "absent.txt"):
            pass
        assert rejected.value.reason == "archive_entry_corrupt"
    assert len(parsed) == 1
    with inbox.holding([KEY]), inbox.open(KEY, "doc-0.txt") as entry:  # a new holding parses its pack anew
        assert entry.read() == ENTRIES["doc-0.txt"]
    assert len(parsed) == 2
