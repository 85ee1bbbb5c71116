"""The synthetic sample batch: manifest, documents, faulty files and expected outcomes."""

from __future__ import annotations

import csv
import unicodedata
from datetime import date, timedelta
from pathlib import Path

import magic
import pytest
from defusedxml import ElementTree
from pypdf import PdfReader

from pipeline.core.identity import INS_OID_NIR, is_valid_nir
from pipeline.core.reasons import REASONS
from pipeline.ingest.manifest import MANIFEST_COLUMNS
from pipeline.samples.batch import EXPECTED_COLUMNS, SampleSummary, generate_samples
from pipeline.samples.vocabulary import COMMON_TYPE_NAMES, DOC_TYPES, NEUTRAL_TITLE, REFERENCE_DATE

DOCUMENTS = 40
PATIENTS = 8
HL7 = "{urn:hl7-org:v3}"
Rows = dict[str, dict[str, str]]
Batch = tuple[Path, SampleSummary]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleSummary]:
    out = tmp_path_factory.mktemp("samples") / "batch"
    return out, generate_samples(out, patients=PATIENTS, documents=DOCUMENTS, seed=7)


@pytest.fixture(scope="module")
def manifest(batch: Batch) -> Rows:
    return {row["file"]: row for row in _rows(batch[0] / "manifest.csv")}


@pytest.fixture(scope="module")
def expected(batch: Batch) -> Rows:
    return {row["file"]: row for row in _rows(batch[0] / "expected.csv")}


def _files_with_reason(expected: Rows, reason: str) -> list[str]:
    return [name for name, row in expected.items() if row["expected_reason"] == reason]


def _good(expected: Rows, suffix: str) -> list[str]:
    return [name for name, row in expected.items() if row["expected_state"] == "indexed" and name.endswith(suffix)]


def test_manifest_has_exact_columns_and_one_row_per_document(batch: Batch) -> None:
    with (batch[0] / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    assert tuple(header) == MANIFEST_COLUMNS
    assert len(rows) == DOCUMENTS
    assert len({row[2] for row in rows}) == DOCUMENTS  # source_document_id is unique


def test_every_listed_file_exists_except_the_missing_one(batch: Batch, manifest: Rows, expected: Rows) -> None:
    absent = [name for name in manifest if not (batch[0] / name).is_file()]
    assert absent == _files_with_reason(expected, "missing_file")
    assert len(absent) == 1


def test_folder_is_flat(batch: Batch) -> None:
    assert all(path.is_file() for path in batch[0].iterdir())


def test_expected_has_one_row_per_listed_or_written_file(batch: Batch, manifest: Rows, expected: Rows) -> None:
    assert tuple(_rows(batch[0] / "expected.csv")[0]) == EXPECTED_COLUMNS
    written = {path.name for path in batch[0].iterdir()} - {"manifest.csv", "expected.csv"}
    assert set(expected) == set(manifest) | written


def test_good_pdfs_open_with_pages_and_text(batch: Batch, expected: Rows) -> None:
    names = [name for name in _good(expected, ".pdf") if not _is_scan(name)]
    assert len(names) > DOCUMENTS // 2
    for name in names:
        reader = PdfReader(batch[0] / name)
        assert 1 <= len(reader.pages) <= 4, name
        assert reader.pages[0].extract_text().strip(), name


def test_good_cda_documents_carry_the_manifest_nir(batch: Batch, manifest: Rows, expected: Rows) -> None:
    names = _good(expected, ".xml")
    assert names
    for name in names:
        root = ElementTree.parse(batch[0] / name).getroot()
        assert root.tag == f"{HL7}ClinicalDocument"
        patient_id = root.find(f"{HL7}recordTarget/{HL7}patientRole/{HL7}id")
        assert patient_id is not None
        assert patient_id.get("root") == INS_OID_NIR
        assert patient_id.get("extension") == manifest[name]["patient_ins"]
        assert root.find(f"{HL7}component/{HL7}structuredBody") is not None


def test_cda_expected_type_comes_from_its_own_code(batch: Batch, expected: Rows) -> None:
    for name in _good(expected, ".xml"):
        code = ElementTree.parse(batch[0] / name).getroot().find(f"{HL7}code")
        assert code is not None
        assert expected[name]["type_code"] == code.get("code")
        assert expected[name]["class_code"] == DOC_TYPES[code.get("code")].class_code


# A heading only documents of that type have, in the generated text.
MARKERS = {
    "11490-0": "Diagnostic de sortie",
    "11502-2": "Commentaire du biologiste",
    "18748-4": "Médecin demandeur",
    "57833-6": "Fait le",
    "34874-8": "Déroulement",
    "15507-7": "Motif de recours",
}


def _slug(title: str) -> str:
    plain = unicodedata.normalize("NFKD", title.lower()).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in plain).split())


def _is_scan(name: str) -> bool:
    return any(name.endswith(f"-{_slug(t.title)}.pdf") for t in DOC_TYPES.values())


def _text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_markers_belong_to_their_type_only(batch: Batch, expected: Rows) -> None:
    for name in _good(expected, ".pdf"):
        if expected[name]["type_code"] in MARKERS and not _is_scan(name):
            text = _text(batch[0] / name)
            assert {code for code, marker in MARKERS.items() if marker in text} == {expected[name]["type_code"]}, name


def _check_expected_codes(out: Path, manifest: Rows, expected: Rows) -> None:
    titles = {t.title: t for t in DOC_TYPES.values()}
    for name in _good(expected, ".pdf"):
        want = (expected[name]["class_code"], expected[name]["type_code"])
        declared, title = manifest[name]["document_type"], manifest[name]["title"]
        code = COMMON_TYPE_NAMES.get(declared, declared)
        if code:
            assert want == (DOC_TYPES[code].class_code, code), name
        elif title != NEUTRAL_TITLE:  # the title names the type
            assert want == (titles[title].class_code, titles[title].code), name
        elif _is_scan(name):  # only the file name tells
            assert not _text(out / name).strip(), name
            assert name.endswith(f"-{_slug(DOC_TYPES[want[1]].title)}.pdf"), name
        elif want == ("95", "unknown"):  # an administrative note: nothing tells
            text = _text(out / name)
            assert text.strip() and not any(marker in text for marker in MARKERS.values()), name
            assert not any(t in text for t in titles), name
        else:  # only the text tells
            assert want == (DOC_TYPES[want[1]].class_code, want[1]), name
            assert MARKERS[want[1]] in _text(out / name), name


def test_good_pdf_expected_codes_follow_the_manifest_title_file_name_or_text(batch: Batch, manifest: Rows, expected: Rows) -> None:
    _check_expected_codes(batch[0], manifest, expected)


LARGER = 300


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Rows, Rows]:
    out = tmp_path_factory.mktemp("samples") / "larger"
    generate_samples(out, patients=10, documents=LARGER, seed=11)
    return out, {r["file"]: r for r in _rows(out / "manifest.csv")}, {r["file"]: r for r in _rows(out / "expected.csv")}


@pytest.mark.slow  # generates a larger batch
def test_a_larger_batch_has_every_way_of_telling_the_type(larger: tuple[Path, Rows, Rows]) -> None:
    out, manifest, expected = larger
    _check_expected_codes(out, manifest, expected)
    good = _good(expected, ".pdf")
    neutral = [name for name in good if manifest[name]["title"] == NEUTRAL_TITLE]
    unknown = [name for name in neutral if expected[name]["type_code"] == "unknown"]
    scans = [name for name in neutral if _is_scan(name)]
    by_text = [name for name in neutral if name not in unknown and name not in scans]
    with_heading = [name for name in by_text if DOC_TYPES[expected[name]["type_code"]].title in _text(out / name)]
    assert scans and with_heading and len(with_heading) < len(by_text)  # some texts have no heading either
    assert 1 <= len(unknown) <= round(0.03 * LARGER)  # about 2 % of the batch cannot be classified
    assert any(manifest[name]["document_type"] == "" and manifest[name]["title"] != NEUTRAL_TITLE for name in good)
    assert all(row["type_code"] != "unknown" for name, row in expected.items() if name not in unknown)


def test_an_unclassifiable_document_is_there_from_20_documents(tmp_path: Path) -> None:
    out = generate_samples(tmp_path / "out", patients=3, documents=20, seed=4).out
    assert [row for row in _rows(out / "expected.csv") if row["type_code"] == "unknown"]


def test_manifest_uses_codes_common_names_and_empty_types(manifest: Rows) -> None:
    declared = [row["document_type"] for row in manifest.values()]
    assert any(value in DOC_TYPES for value in declared)
    assert any(value in COMMON_TYPE_NAMES for value in declared)
    assert "" in declared


def test_common_names_include_english_ones() -> None:
    assert {"discharge summary", "Lab report"} <= set(COMMON_TYPE_NAMES)
    assert set(COMMON_TYPE_NAMES.values()) <= set(DOC_TYPES)


def test_good_rows_have_valid_nirs(manifest, expected: Rows) -> None:
    good = [row for name, row in manifest.items() if expected[name]["expected_state"] == "indexed"]
    assert all(is_valid_nir(row["patient_ins"]) and len(row["patient_ins"]) == 15 for row in good)


def test_invalid_ins_row_fails_the_key_check(manifest, expected: Rows) -> None:
    names = _files_with_reason(expected, "invalid_ins")
    assert names
    for name in names:
        nir = manifest[name]["patient_ins"]
        assert len(nir) == 15
        assert not is_valid_nir(nir)


def test_corsican_nirs_present(manifest: Rows) -> None:
    departements = {row["patient_ins"][5:7] for row in manifest.values()}
    assert {"2A", "2B"} <= departements


def test_expected_lists_each_bad_kind_with_its_reason(expected: Rows) -> None:
    rejected = [row for row in expected.values() if row["expected_state"] == "rejected"]
    reasons = {row["expected_reason"] for row in rejected}
    assert reasons == {"pdf_corrupt", "type_mismatch", "invalid_ins", "empty_file", "missing_file", "unlisted_file"}
    assert reasons <= set(REASONS)
    assert all(row["class_code"] == "" and row["type_code"] == "" for row in rejected)
    assert all(row["expected_reason"] == "" for row in expected.values() if row["expected_state"] == "indexed")


def test_wrong_extension_file_is_a_png(batch: Batch, expected: Rows) -> None:
    for name in _files_with_reason(expected, "type_mismatch"):
        assert name.endswith(".pdf")
        assert magic.from_file(str(batch[0] / name), mime=True) == "image/png"


def test_truncated_pdf_has_no_end_marker(batch: Batch, expected: Rows) -> None:
    for name in _files_with_reason(expected, "pdf_corrupt"):
        data = (batch[0] / name).read_bytes()
        assert data.startswith(b"%PDF-")
        assert b"%%EOF" not in data and b"trailer" not in data


def test_empty_file_has_no_bytes(batch: Batch, expected: Rows) -> None:
    names = _files_with_reason(expected, "empty_file")
    assert names and all((batch[0] / name).stat().st_size == 0 for name in names)


def test_unlisted_file_is_a_good_pdf_missing_from_the_manifest(batch: Batch, manifest: Rows, expected: Rows) -> None:
    (name,) = _files_with_reason(expected, "unlisted_file")
    assert name not in manifest
    assert len(PdfReader(batch[0] / name).pages) >= 1


def test_service_dates_lie_in_the_three_years_before_the_reference(manifest: Rows) -> None:
    for row in manifest.values():
        day = date.fromisoformat(row["service_date"])
        assert REFERENCE_DATE - timedelta(days=3 * 365) < day <= REFERENCE_DATE


def test_authors_have_rpps_like_ids_and_known_professions(manifest: Rows) -> None:
    for row in manifest.values():
        assert len(row["author_id"]) == 11 and row["author_id"].isdigit()
        assert row["author_profession"] in {"physician", "lab_biologist", "pharmacist", "nurse", "midwife"}


def test_summary_counts_match_expected_csv(batch: Batch, manifest: Rows, expected: Rows) -> None:
    out, summary = batch
    states = [row["expected_state"] for row in expected.values()]
    assert summary.out == out
    assert summary.documents == len(manifest) == DOCUMENTS
    assert summary.good == states.count("indexed")
    assert summary.bad == states.count("rejected")
    assert summary.patients == PATIENTS == len({row["patient_ins"][:13] for row in manifest.values()})


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = generate_samples(tmp_path / "a", patients=5, documents=DOCUMENTS, seed=3).out
    second = generate_samples(tmp_path / "b", patients=5, documents=DOCUMENTS, seed=3).out
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)


def test_other_seed_gives_other_patients(tmp_path: Path) -> None:
    first = generate_samples(tmp_path / "a", patients=5, documents=20, seed=1).out
    second = generate_samples(tmp_path / "b", patients=5, documents=20, seed=2).out
    nirs = [{row["patient_ins"] for row in _rows(out / "manifest.csv")} for out in (first, second)]
    assert nirs[0] != nirs[1]


def test_without_bad_samples_everything_is_expected_indexed(tmp_path: Path) -> None:
    summary = generate_samples(tmp_path / "out", patients=4, documents=25, seed=5, bad=False)
    rows = _rows(summary.out / "expected.csv")
    assert len(rows) == 25 and all(row["expected_state"] == "indexed" for row in rows)
    assert (summary.documents, summary.good, summary.bad) == (25, 25, 0)


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "already.txt").write_text("x")
    with pytest.raises(ValueError):
        generate_samples(tmp_path, documents=20)


def test_accepts_an_existing_empty_folder(tmp_path: Path) -> None:
    summary = generate_samples(tmp_path, patients=3, documents=5, bad=False)
    assert len(_rows(tmp_path / "manifest.csv")) == summary.documents == 5
