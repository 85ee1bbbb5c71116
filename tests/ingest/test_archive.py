"""Hostile archives are refused whole, with a stable reason, before anything is read out of them."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.core.reasons import REASONS
from pipeline.core.zipscan import EntryHeads
from pipeline.ingest.archive import ArchiveLimits, ArchiveRejected, check_archive, check_names
from tests.hostile.archives import build_zip, encrypted, hostile_archives, symlink_entry

MIB = 1024 * 1024
LIMITS = ArchiveLimits(max_uncompressed_bytes=64 * MIB, max_ratio=500)


_zip = build_zip


def _verdict(data: bytes, limits: ArchiveLimits, heads: EntryHeads | None) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_archive(archive, limits, heads)
    except ArchiveRejected as rejection:
        assert rejection.code in REASONS
        return rejection.code
    return None


def _reason(data: bytes, limits: ArchiveLimits = LIMITS) -> str | None:
    """The archive's verdict, the same whether its entries' first bytes are read from it (a dropped
    zip) or were caught as it streamed in (an upload, in odd-sized pieces)."""
    heads = EntryHeads()
    for at in range(0, len(data), 7919):
        heads.update(data[at : at + 7919])
    read_back = _verdict(data, limits, None)
    assert _verdict(data, limits, heads) == read_back
    return read_back


def test_a_sound_batch_zip_passes(sample_batch):
    assert _reason(_zip([(p.name, p.read_bytes()) for p in sorted(sample_batch.iterdir())])) is None


@pytest.mark.parametrize("name", ["/etc/cron.d/x", "\\windows\\x.pdf", "C:/x.pdf", "c:x.pdf"])
def test_an_absolute_path_is_refused(name):
    assert _reason(_zip([("manifest.csv", b"file\n"), (name, b"x")])) == "archive_absolute_path"


@pytest.mark.parametrize("name", ["../x.pdf", "docs/../../x.pdf", "docs\\..\\..\\x.pdf", ".."])
def test_a_path_climbing_out_is_refused(name):
    assert _reason(_zip([("manifest.csv", b"file\n"), (name, b"x")])) == "archive_path_traversal"


def test_a_symbolic_link_entry_is_refused():
    assert _reason(_zip([("manifest.csv", b"file\n"), (symlink_entry("doc.pdf"), b"/etc/passwd")])) == "archive_symlink"


@pytest.mark.parametrize("second", ["doc.pdf", "./doc.pdf"])
def test_two_entries_with_one_name_are_refused(second):
    with pytest.warns(UserWarning, match="Duplicate name") if second == "doc.pdf" else contextlib.nullcontext():
        data = _zip([("doc.pdf", b"first"), (second, b"second")])
    assert _reason(data) == "archive_duplicate_name"


def test_an_encrypted_entry_is_refused():
    assert _reason(encrypted(_zip([("doc.pdf", b"ciphertext")], zipfile.ZIP_STORED))) == "archive_encrypted"


@pytest.mark.slow  # builds each hostile archive at full size
@pytest.mark.parametrize("reason", sorted(hostile_archives(64 * MIB)))
def test_each_crafted_hostile_archive_is_refused_for_its_own_reason(reason):
    assert _reason(hostile_archives(64 * MIB)[reason]) == reason


def test_a_zip_inside_the_batch_is_one_level_and_passes():
    inner = _zip([("scan.pdf", b"%PDF-1.4")])
    assert _reason(_zip([("manifest.csv", b"file\n"), ("images.zip", inner)])) is None


@pytest.mark.parametrize("outer_name", ["images.zip", "disguised.pdf"])
def test_a_zip_holding_a_zip_inside_the_batch_is_refused(outer_name):
    innermost = _zip([("bomb.txt", b"0" * 100)])
    middle = _zip([("readme.txt", b"x"), ("again.pdf", innermost)])
    assert _reason(_zip([("manifest.csv", b"file\n"), (outer_name, middle)])) == "archive_nested_too_deep"


def test_a_total_uncompressed_size_past_the_limit_is_refused():
    data = _zip([(f"doc-{n}.txt", bytes(range(256)) * 4096) for n in range(3)])  # 3 MiB in all
    assert _reason(data, ArchiveLimits(max_uncompressed_bytes=2 * MIB, max_ratio=500)) == "archive_too_large"


def test_an_entry_compressed_past_the_ratio_is_refused():
    assert _reason(_zip([("manifest.csv", b"file\n"), ("doc.pdf", bytes(8 * MIB))])) == "archive_ratio_exceeded"


def test_small_entries_adding_up_to_a_bomb_are_refused_by_the_whole_archive_ratio():
    data = _zip([(f"part-{n}.txt", bytes(MIB - 1)) for n in range(8)])  # each under 1 MiB: not held to the ratio alone
    assert _reason(data) == "archive_ratio_exceeded"


def test_uploaded_file_names_follow_the_same_rules():
    seen: set[str] = set()
    check_names(["a/doc.pdf"], seen)
    with pytest.raises(ArchiveRejected) as duplicate:
        check_names(["a//doc.pdf"], seen)
    assert duplicate.value.code == "archive_duplicate_name"
    with pytest.raises(ArchiveRejected) as climbing:
        check_names(["../doc.pdf"], seen)
    assert climbing.value.code == "archive_path_traversal"


@pytest.mark.slow  # dmp ingest end to end
def test_dmp_ingest_refuses_a_hostile_zip_with_its_reason(embedded_settings, tmp_path):
    from pipeline.cli import app

    archive = tmp_path / "batch.zip"
    archive.write_bytes(_zip([("manifest.csv", b"file\n"), ("../../outside.pdf", b"%PDF")]))
    result = CliRunner().invoke(app, ["ingest", str(archive), "--source", "hospital:X"], env={"DMP_HOME": str(embedded_settings.home)})
    assert result.exit_code == 2
    assert "archive" in result.output and "'..'" in result.output
    assert not (tmp_path.parent / "outside.pdf").exists()


def test_the_limits_come_from_the_settings():
    from pipeline.core.settings import Settings

    limits = ArchiveLimits.from_settings(Settings(archive_max_uncompressed_bytes=5, archive_max_ratio=7))
    assert (limits.max_uncompressed_bytes, limits.max_ratio) == (5, 7)


def test_nothing_is_written_outside_the_inbox_for_a_sound_nested_path(embedded_settings, tmp_path):
    from pipeline.ingest.intake import receive_batch
    from pipeline.runtime import Runtime

    header = b"file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"
    archive = tmp_path / "nested.zip"
    archive.write_bytes(
        _zip([("manifest.csv", header + b"a/b/c.pdf,185057512345673,X1,T,,2025-01-02,1,physician\n"), ("a/b/c.pdf", b"%PDF")])
    )
    rt = Runtime.from_settings(embedded_settings, prepare=True)
    receive_batch(rt, archive, "hospital:X", lambda _item: None)
    keys = list(rt.store.list_keys())
    rt.close()
    assert keys and all(key.startswith("inbox/") and "a/b" not in key for key in keys)
    assert not list(Path(embedded_settings.home).rglob("c.pdf"))


def _entries(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.csv", b"file\n")
        for n in range(count - 1):
            archive.writestr(f"d{n}", b"")
    return out.getvalue()


def _directory_verdict(data: bytes, limits: ArchiveLimits) -> str | None:
    from pipeline.ingest.batch import ZipBatch

    try:
        ZipBatch(io.BytesIO(data), limits=limits)
    except ArchiveRejected as rejection:
        return rejection.code
    return None


def test_a_zip_listing_more_entries_than_allowed_is_refused_before_its_directory_is_read():
    limits = ArchiveLimits(max_uncompressed_bytes=64 * MIB, max_ratio=500, max_entries=10)
    assert _directory_verdict(_entries(10), limits) is None
    assert _directory_verdict(_entries(11), limits) == "archive_too_many_entries"


@pytest.mark.slow  # writes a zip of 65,536 entries
def test_the_entry_count_of_a_zip64_directory_is_read_from_its_zip64_record():
    limits = ArchiveLimits(max_uncompressed_bytes=64 * MIB, max_ratio=500, max_entries=0xFFFF)
    assert _directory_verdict(_entries(0xFFFF + 1), limits) == "archive_too_many_entries"  # the plain record says 0xFFFF
