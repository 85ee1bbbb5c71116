"""Manifest parsing: bad rows are reported one by one, the rest goes on."""

import pytest

from pipeline.ingest.manifest import ManifestError, parse_manifest

HEADER = "file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"


def test_rows_are_read_with_their_fields():
    manifest = parse_manifest((HEADER + "a.pdf,185057512345678,S1,Lettre,11490-0,2025-01-01,1,physician\n").encode())
    assert [row.file for row in manifest.rows] == ["a.pdf"]
    assert manifest.rows[0].fields["document_type"] == "11490-0"


def test_a_semicolon_separated_manifest_with_a_bom_is_accepted():
    text = "\ufeff" + HEADER.replace(",", ";") + "a.pdf;1;S1;T;;2025-01-01;1;physician\n"
    assert parse_manifest(text.encode()).rows[0].file == "a.pdf"


def test_missing_required_columns_make_the_manifest_unusable():
    with pytest.raises(ManifestError, match="patient_ins"):
        parse_manifest(b"file,title\na.pdf,x\n")


def test_a_row_with_a_wrong_field_count_is_rejected_alone():
    data = HEADER + "a.pdf,1,S1,T,,2025-01-01,1,physician\nb.pdf,1,S2\n"
    manifest = parse_manifest(data.encode())
    assert [row.file for row in manifest.rows] == ["a.pdf"]
    assert [(p.row_number, p.reason) for p in manifest.problems] == [(2, "invalid_manifest_row")]


def test_a_file_listed_twice_is_rejected_the_second_time():
    data = HEADER + "a.pdf,1,S1,T,,2025-01-01,1,physician\na.pdf,1,S2,T,,2025-01-01,1,physician\n"
    manifest = parse_manifest(data.encode())
    assert [p.reason for p in manifest.problems] == ["duplicate_manifest_row"]


def test_a_field_longer_than_its_column_or_holding_nul_rejects_its_row_alone_naming_the_field():
    rows = [
        "a.pdf,1,S1,T,,2025-01-01,1,physician",
        "b.pdf,1,S2,T,,2025-01-01," + "9" * 65 + ",physician",
        "c.pdf,1," + "S" * 257 + ",T,,2025-01-01,1,physician",
        "d.pdf,1,S4,Synth\x00se,,2025-01-01,1,physician",
        "e" * 509 + ".pdf,1,S5,T,,2025-01-01,1,physician",
    ]
    manifest = parse_manifest((HEADER + "\n".join(rows) + "\n").encode())
    assert [row.file for row in manifest.rows] == ["a.pdf"]
    assert [(p.row_number, p.reason, p.detail) for p in manifest.problems] == [
        (2, "invalid_metadata", "author_id is longer than 64 characters"),
        (3, "invalid_metadata", "source_document_id is longer than 256 characters"),
        (4, "invalid_metadata", "title holds a NUL character"),
        (5, "invalid_manifest_row", "file is longer than 512 characters"),
    ]
