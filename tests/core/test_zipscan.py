"""What an upload's zip leaves behind as it streams in: its entries' first bytes, its two ends."""

from __future__ import annotations

import contextlib
import io
import random
import zipfile

import pytest

from pipeline.core.zipscan import EntryHeads, KeptEnds

ENTRIES = {
    "manifest.csv": b"file,patient_ins\n" * 40,
    "stored.pdf": b"%PDF-1.7 stored",
    "deflated.pdf": b"%PDF-1.4 " + bytes(range(256)) * 300,
    "inner.bin": b"PK\x03\x04 a zip in disguise",
    "empty.txt": b"",
    "random.bin": random.Random(1).randbytes(200_000),
}


def _zip(entries: dict[str, bytes] = ENTRIES) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data, zipfile.ZIP_STORED if name.startswith("stored") else zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _streamed(data: bytes, piece: int) -> EntryHeads:
    heads = EntryHeads()
    for at in range(0, len(data), piece):
        heads.update(data[at : at + piece])
    return heads


@pytest.mark.parametrize("piece", [1, 7, 4096, 10**7])
def test_each_entry_s_first_bytes_are_caught_however_the_stream_is_cut(piece):
    data = _zip()
    heads = _streamed(data, piece)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            assert heads.head(info) == ENTRIES[info.filename][:4], info.filename


class _Unseekable(io.RawIOBase):
    """Where zipfile writes as a streaming writer (Java's ZipOutputStream, say) does: sizes after each entry's data."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk) -> int:  # type: ignore[no-untyped-def]
        self.data += chunk
        return len(chunk)


def _streamed_zip(entries: dict[str, bytes], compression: int) -> bytes:
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", compression) as archive:
        for name, data in entries.items():
            with archive.open(name, "w") as entry:
                entry.write(data)
    return bytes(sink.data)


@pytest.mark.parametrize("piece", [1, 4096, 10**7])
def test_deflated_entries_with_their_sizes_after_them_are_followed_to_their_end(piece):
    data = _streamed_zip(ENTRIES, zipfile.ZIP_DEFLATED)
    heads = _streamed(data, piece)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert all(info.flag_bits & 0x08 for info in archive.infolist())
        for info in archive.infolist():
            assert heads.head(info) == ENTRIES[info.filename][:4], info.filename


def test_a_stored_entry_with_its_sizes_after_it_stops_the_scan_and_is_read_back():
    data = _streamed_zip({"doc.pdf": b"%PDF-1.4"}, zipfile.ZIP_STORED)
    heads = _streamed(data, 4096)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert heads.stopped and heads.head(archive.infolist()[0]) is None


def test_inflating_a_bomb_to_find_its_end_stops_at_the_bound(monkeypatch):
    from pipeline.core import zipscan

    monkeypatch.setattr(zipscan, "INFLATE_MARGIN", 1024 * 1024)
    data = _streamed_zip({"bomb.txt": bytes(32 * 1024 * 1024), "doc.pdf": b"%PDF"}, zipfile.ZIP_DEFLATED)
    heads = _streamed(data, 65536)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert heads.stopped and heads.head(archive.getinfo("doc.pdf")) is None


def test_an_entry_whose_directory_disagrees_with_its_local_header_is_read_back():
    data = bytearray(_zip({"doc.pdf": b"PK\x03\x04" + b"x" * 100}))
    data[8:10] = b"\x00\x00"  # the local header now says stored; the directory still says deflated
    heads = _streamed(bytes(data), 4096)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        assert heads.head(archive.infolist()[0]) is None


def test_a_deflated_entry_longer_than_what_is_kept_still_gives_its_first_bytes():
    data = _zip({"random.bin": ENTRIES["random.bin"]})
    heads = _streamed(data, 65536)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert heads.head(archive.infolist()[0]) == ENTRIES["random.bin"][:4]


class _Remote:
    """The stored copy, counting how often it is opened."""

    def __init__(self, data: bytes) -> None:
        self.data, self.opened = data, 0

    @contextlib.contextmanager
    def __call__(self):  # type: ignore[no-untyped-def]
        self.opened += 1
        yield io.BytesIO(self.data)


def _kept(data: bytes, keep: int) -> KeptEnds:
    ends = KeptEnds(keep)
    for at in range(0, len(data), 5000):
        ends.update(data[at : at + 5000])
    return ends


def test_a_zip_s_directory_and_first_entry_are_read_from_memory():
    data = _zip()
    remote = _Remote(data)
    with _kept(data, 64 * 1024).reader(remote) as handle, zipfile.ZipFile(handle) as archive:
        assert archive.read("manifest.csv") == ENTRIES["manifest.csv"]
    assert remote.opened == 0


def test_reads_between_the_kept_ends_go_to_the_stored_copy_and_give_the_same_bytes():
    data = _zip()
    remote = _Remote(data)
    rng = random.Random(3)
    with _kept(data, 4096).reader(remote) as handle:
        for _ in range(300):
            at, size = rng.randrange(len(data)), rng.randrange(1, 9000)
            handle.seek(at)
            assert handle.read(size) == data[at : at + size]
        handle.seek(-10, io.SEEK_END)
        assert handle.read() == data[-10:]
    assert remote.opened == 1
