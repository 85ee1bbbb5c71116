"""Upload functions (no HTTP): bodies streamed into the inbox, never held whole, then the usual intake."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.identity import with_key
from pipeline.documents.process import process_item
from pipeline.index import repo
from pipeline.index.models import BatchItem
from pipeline.ingest.uploads import UploadRejected, metadata_manifest, receive_document, receive_multipart_batch, receive_zip
from pipeline.runtime import Runtime

SIZE = 48 * 1024 * 1024
HEADER = b"file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"
ROW = b"big.txt," + with_key("1850575123456").encode() + b",BIG-1,Compte rendu de biologie,,2025-01-02,1,physician\n"
LINE = b"Resultat de biologie: hemoglobine 13,2 g/dL, plaquettes 250 G/L, creatinine 78 umol/L.\n"
METADATA = {
    "patient_ins": with_key("1850575123456"),
    "source_document_id": "ONE-1",
    "title": "Compte rendu",
    "document_type": "11490-0",
    "service_date": "2025-01-02",
    "author_id": "10001234567",
    "author_profession": "physician",
}


class _Stream:
    """A body that exists only as it is read (as a request body arrives)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces, self.pending = pieces, b""

    def read(self, size: int = -1) -> bytes:
        while len(self.pending) < size and (piece := next(self.pieces, None)) is not None:
            self.pending += piece
        data, self.pending = self.pending[:size], self.pending[size:]
        return data


def _file_pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(256 * 1024):
            yield chunk


def _multipart(boundary: bytes, parts: list[tuple[str, str, Iterator[bytes]]]) -> Iterator[bytes]:
    for name, filename, pieces in parts:
        yield b"--" + boundary + f'\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'.encode()
        yield from pieces
        yield b"\r\n"
    yield b"--" + boundary + b"--\r\n"


def _big_document() -> Iterator[bytes]:
    for _ in range(SIZE // (len(LINE) * 1024)):
        yield LINE * 1024


@pytest.fixture
def runtime(embedded_settings) -> Iterator[Runtime]:
    rt = Runtime.from_settings(embedded_settings, prepare=True)
    yield rt
    rt.close()


def _peak(work) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # 48 MiB through the upload path
def test_a_zip_upload_goes_through_in_bounded_memory(runtime, tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.csv", HEADER + ROW)
        with zf.open("big.txt", "w", force_zip64=True) as member:
            for piece in _big_document():
                member.write(piece)
    sent: list[str] = []
    peak = _peak(lambda: receive_zip(runtime, _Stream(_file_pieces(archive)), "lab:BIG", sent.append))  # type: ignore[arg-type]
    assert len(sent) == 1 and peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


TWO_DOCUMENTS = {
    "manifest.csv": HEADER + ROW.replace(b"big.txt", b"a.txt") + ROW.replace(b"big.txt", b"b.txt").replace(b"BIG-1", b"BIG-2"),
    "a.txt": b"Compte rendu A: " + LINE,
    "b.txt": b"Compte rendu B: " + LINE,
}


def _items(runtime: Runtime, batch_id: str) -> dict[str, BatchItem]:
    with runtime.sessions() as session:
        return {item.file: item for item in repo.batch_items(session, batch_id)}


def test_a_zip_upload_stays_as_its_documents_inbox_object_without_a_copy(runtime):
    result = receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", lambda _item: None)
    items = _items(runtime, result.batch_id)
    (key,) = list(runtime.store.list_keys("inbox/"))
    assert {(i.inbox_key, i.inbox_member) for i in items.values()} == {(key, "a.txt"), (key, "b.txt")}
    with runtime.inbox.open(key, "b.txt") as entry:
        assert entry.read() == TWO_DOCUMENTS["b.txt"]


def test_the_shared_zip_is_deleted_with_its_last_waiting_item(runtime):
    result = receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", lambda _item: None)
    items = _items(runtime, result.batch_id)
    process_item(runtime, items["a.txt"].id)
    assert list(runtime.store.list_keys("inbox/")) == [items["b.txt"].inbox_key]  # b still reads from it
    process_item(runtime, items["b.txt"].id)
    assert not list(runtime.store.list_keys("inbox/"))
    assert {i.state for i in _items(runtime, result.batch_id).values()} <= {"indexed", "rejected"}


def test_a_damaged_zip_entry_is_rejected_with_its_reason_and_the_other_documents_go_on(runtime):
    data = bytearray(_zip(TWO_DOCUMENTS, zipfile.ZIP_STORED))
    at = data.index(b"Compte rendu A")
    data[at] ^= 0xFF  # the entry's bytes no longer match its CRC
    result = receive_zip(runtime, io.BytesIO(bytes(data)), "lab:Z", lambda _item: None)
    items = _items(runtime, result.batch_id)
    assert process_item(runtime, items["a.txt"].id) == "rejected"
    assert _items(runtime, result.batch_id)["a.txt"].reason == "archive_entry_corrupt"
    assert process_item(runtime, items["b.txt"].id) == "indexed"


def test_an_uploaded_zip_with_unmarked_utf8_names_is_read_by_the_worker_under_those_names(runtime):
    from tests.core.test_zipnames import unmarked_utf8_zip

    accented = {"manifest.csv": HEADER + ROW.replace(b"big.txt", "résultat.txt".encode()), "résultat.txt": b"Compte rendu: " + LINE}
    result = receive_zip(runtime, io.BytesIO(unmarked_utf8_zip(accented)), "lab:Z", lambda _item: None)
    (item,) = _items(runtime, result.batch_id).values()
    assert (item.file, item.inbox_member) == ("résultat.txt", "résultat.txt")
    assert process_item(runtime, item.id) == "indexed"


def test_a_decomposed_part_file_name_matches_the_manifest_s_composed_one(runtime):
    import unicodedata

    manifest = HEADER + ROW.replace(b"big.txt", "résultat.txt".encode())
    nfd = unicodedata.normalize("NFD", "résultat.txt")  # as a browser or curl on macOS names the file
    body = _multipart(b"B", [("manifest", "manifest.csv", iter([manifest])), ("file", nfd, iter([b"Compte rendu: " + LINE]))])
    result = receive_multipart_batch(runtime, _Stream(body), b"B", "lab:X", lambda _item: None)  # type: ignore[arg-type]
    assert [(i.file, i.state) for i in _items(runtime, result.batch_id).values()] == [("résultat.txt", "queued")]


def test_a_resent_zip_is_discarded_while_the_first_still_serves(runtime):
    first = receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", lambda _item: None)
    (kept,) = list(runtime.store.list_keys("inbox/"))
    again = receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", lambda _item: None)
    assert again.resumed and again.batch_id == first.batch_id
    assert list(runtime.store.list_keys("inbox/")) == [kept]


def test_a_resent_zip_takes_over_when_the_first_one_is_gone(runtime):
    first = receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", lambda _item: None)
    (lost,) = list(runtime.store.list_keys("inbox/"))
    runtime.store.delete(lost)
    sent: list[str] = []
    receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", sent.append)
    (key,) = list(runtime.store.list_keys("inbox/"))
    items = _items(runtime, first.batch_id)
    assert key != lost and {i.inbox_key for i in items.values()} == {key} and sorted(sent) == sorted(i.id for i in items.values())
    with runtime.inbox.open(key, items["a.txt"].inbox_member) as entry:
        assert entry.read() == TWO_DOCUMENTS["a.txt"]


@pytest.mark.slow  # 48 MiB through the upload path
def test_a_multipart_part_goes_through_in_bounded_memory_and_is_its_item_s_inbox_object(runtime):
    body = _multipart(b"BOUNDARY", [("manifest", "manifest.csv", iter([HEADER + ROW])), ("file", "big.txt", _big_document())])
    sent: list[str] = []
    result = []
    peak = _peak(lambda: result.append(receive_multipart_batch(runtime, _Stream(body), b"BOUNDARY", "lab:BIG", sent.append)))  # type: ignore[arg-type]
    assert len(sent) == 1 and peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    with runtime.sessions() as session:
        (item,) = repo.batch_items(session, result[0].batch_id)
    assert list(runtime.store.list_keys("inbox/")) == [item.inbox_key]  # the uploaded part itself, no copy
    assert item.inbox_key.startswith("inbox/uploads/")


def test_a_single_document_is_a_batch_of_one_named_by_its_metadata(runtime):
    def send(metadata: dict) -> str:
        parts = [("metadata", "metadata.json", iter([json.dumps(metadata).encode()])), ("file", "cr.txt", iter([b"Compte rendu"]))]
        stream = _Stream(_multipart(b"B", [(n, f, p) for n, f, p in parts]))
        return receive_document(runtime, stream, b"B", "hospital:ONE", lambda _item: None).batch_id  # type: ignore[arg-type]

    first = send(METADATA)
    assert send(METADATA) == first
    assert send({**METADATA, "source_document_id": "ONE-2"}) != first


def test_metadata_becomes_a_one_row_manifest():
    manifest = metadata_manifest(json.dumps(METADATA).encode(), "cr.pdf").decode()
    header, row = manifest.splitlines()
    assert header.startswith("file,patient_ins") and row.startswith("cr.pdf," + METADATA["patient_ins"])


@pytest.mark.parametrize(
    "metadata",
    [
        b"not json",
        b"[1]",
        json.dumps({**METADATA, "nir": "x"}).encode(),
        json.dumps({"title": "x"}).encode(),
        json.dumps({**METADATA, "title": 3}).encode(),
    ],  # fmt: skip
    ids=["not-json", "not-object", "unknown-field", "missing-fields", "not-a-string"],
)
def test_unusable_metadata_is_refused(metadata):
    with pytest.raises(UploadRejected) as refused:
        metadata_manifest(metadata, "cr.pdf")
    assert refused.value.code == "metadata_invalid"


def test_a_file_part_is_removed_when_the_upload_fails(runtime):
    body = _multipart(b"B", [("file", "doc.txt", iter([b"x" * 1000]))])  # no manifest part
    from pipeline.ingest.manifest import ManifestError

    with pytest.raises(ManifestError):
        receive_multipart_batch(runtime, _Stream(body), b"B", "lab:X", lambda _item: None)  # type: ignore[arg-type]
    assert not list(runtime.store.list_keys("inbox/"))


def test_bytes_read_back_are_the_bytes_sent(runtime):
    data = bytes(range(256)) * 4000
    body = _multipart(
        b"B", [("manifest", "manifest.csv", iter([HEADER + ROW.replace(b"big.txt", b"d.bin")])), ("file", "d.bin", iter([data]))]
    )
    sent: list[str] = []
    receive_multipart_batch(runtime, _Stream(body), b"B", "lab:X", sent.append)  # type: ignore[arg-type]
    (key,) = list(runtime.store.list_keys("inbox/"))
    with runtime.store.open(key) as handle:
        assert handle.read() == data


def test_admitting_a_batch_sends_each_unfinished_item_once_per_call(runtime):
    from pipeline.documents.process import send_waiting_items

    result = receive_zip(runtime, io.BytesIO(_zip(TWO_DOCUMENTS)), "lab:Z", lambda _item: None)
    items = _items(runtime, result.batch_id)
    sent: list[str] = []
    assert send_waiting_items(runtime, result.batch_id, sent.append) == 2
    assert sorted(sent) == sorted(item.id for item in items.values())
    process_item(runtime, items["a.txt"].id)
    sent.clear()
    assert send_waiting_items(runtime, result.batch_id, sent.append) == 1 and sent == [items["b.txt"].id]
