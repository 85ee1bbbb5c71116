"""The document-sharing metadata: checked at intake, the CDA header's own values winning, kept at index time."""

from __future__ import annotations

import csv
import json

from sqlalchemy import select

from pipeline.documents.inspect import sharing_header
from pipeline.index.models import BatchItem, DocumentSharing
from pipeline.ingest.manifest import parse_manifest
from pipeline.sharing.metadata import merged, problem_of, sharing_json
from tests.conftest import index_batch
from tests.sharing.bundles import NIR, cda_bytes, pdf_bytes

HEADER = ["file", "patient_ins", "source_document_id", "title", "service_date", "author_id", "author_profession"]


def _manifest(rows: list[dict[str, str]]) -> bytes:
    columns = list(dict.fromkeys(HEADER + [name for row in rows for name in row]))
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _row(**extra: str) -> dict[str, str]:
    return {"file": "a.pdf", "patient_ins": NIR, "source_document_id": "S1", "title": "t", "service_date": "2025-01-02",
            "author_id": "1", "author_profession": "physician", **extra}  # fmt: skip


def test_the_manifest_keeps_the_optional_sharing_columns():
    manifest = parse_manifest(_manifest([_row(confidentiality="R", facility_type="SA01", event_codes="A B")]))
    assert json.loads(sharing_json(manifest.rows[0].fields) or "{}") == {
        "confidentiality": "R",
        "facility_type": "SA01",
        "event_codes": "A B",
    }


def test_a_manifest_code_outside_its_value_set_rejects_the_row_unknown_code():
    manifest = parse_manifest(_manifest([_row(practice_setting="ASTROLOGIE")]))
    assert [(p.reason, p.row_number) for p in manifest.problems] == [("unknown_code", 1)]


def test_a_sharing_field_longer_than_its_column_is_invalid_metadata():
    assert problem_of({"author_facility": "x" * 300}) == ("invalid_metadata", "author_facility is longer than 256 characters")


def test_no_sharing_field_given_keeps_no_json():
    assert sharing_json({"title": "t"}) is None


def test_the_cda_header_gives_its_sharing_fields():
    from defusedxml.ElementTree import fromstring

    header = sharing_header(fromstring(cda_bytes(NIR, unique="X-1")))
    assert header == {"confidentiality": "R", "language": "fr-FR", "practice_setting": "BIOLOGIE", "facility_type": "SA29",
                      "author_facility": "Laboratoire Central", "author_given": "Claire", "author_family": "Biologiste",
                      "unique_id": "1.2.250.1.999.1.1^X-1", "event_codes": "GLYC HBA1C"}  # fmt: skip


def test_the_cda_header_wins_over_what_was_declared_for_the_fields_it_gives():
    declared = json.dumps({"confidentiality": "N", "facility_type": "SA01", "format_code": "urn:ihe:iti:xds-sd:pdf:2008"})
    kept = merged(declared, {"confidentiality": "V", "facility_type": "SA29"})
    assert kept == {"confidentiality": "V", "facility_type": "SA29", "format_code": "urn:ihe:iti:xds-sd:pdf:2008"}


def test_a_cda_header_value_outside_its_value_set_leaves_the_declared_one():
    assert merged(json.dumps({"confidentiality": "N"}), {"confidentiality": "SECRET"}) == {"confidentiality": "N"}


def test_an_indexed_batch_keeps_each_document_s_sharing_metadata_and_drops_nothing(rt, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(pdf_bytes())
    (folder / "b.xml").write_bytes(cda_bytes(NIR))
    rows = [_row(confidentiality="R", facility_type="SA07", language="en-US"),
            _row(file="b.xml", source_document_id="S2", confidentiality="N", facility_type="SA01")]  # fmt: skip
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    documents = {d.source_document_id: d.id for d in index_batch(rt, folder, "hospital:H1")}
    with rt.sessions() as session:
        kept = {row.document_id: row for row in session.scalars(select(DocumentSharing))}
        assert session.scalars(select(BatchItem.sharing)).all()  # carried on the items
    pdf, cda = kept[documents["S1"]], kept[documents["S2"]]
    assert (pdf.confidentiality, pdf.facility_type, pdf.language, pdf.unique_id) == ("R", "SA07", "en-US", None)
    assert (cda.confidentiality, cda.facility_type, cda.practice_setting, cda.event_codes) == ("R", "SA29", "BIOLOGIE", "GLYC HBA1C")
