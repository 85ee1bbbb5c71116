"""A Bundle built from manifest rows reads back as the same rows and bytes."""

from __future__ import annotations

from pipeline.sharing.bundles import provide_bundle
from pipeline.sharing.provide import read_submission
from tests.sharing.bundles import NIR, pdf_bytes


def test_a_bundle_built_from_manifest_rows_reads_back_as_those_rows_and_bytes():
    rows = [{"file": "a.pdf", "patient_ins": NIR, "source_document_id": "A-1", "title": "Lettre", "document_type": "11490-0",
             "service_date": "2025-02-03", "author_id": "10000000005", "author_profession": "nurse"},
            {"file": "b.pdf", "patient_ins": NIR, "source_document_id": "A-2", "title": "", "document_type": "lettre de sortie",
             "service_date": "2025-02-04", "author_id": "10000000006", "author_profession": "physician"}]  # fmt: skip
    contents = [pdf_bytes("a"), pdf_bytes("b")]
    submission = read_submission(provide_bundle(NIR, rows, contents, "urn:uuid:0").model_dump_json(exclude_none=True).encode())
    assert [d.content for d in submission.documents] == contents
    read = [{k: d.row[k] for k in ("patient_ins", "title", "document_type", "service_date", "author_id", "author_profession")}
            for d in submission.documents]  # fmt: skip
    assert read == [{**{k: rows[0][k] for k in read[0]}}, {**{k: rows[1][k] for k in read[1]}, "document_type": ""}]
    assert [d.row["source_document_id"] for d in submission.documents] == ["urn:dmp:A-1", "urn:dmp:A-2"]
