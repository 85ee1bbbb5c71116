"""Every hostile file ends with its expected reason; the validators never raise anything else."""

from __future__ import annotations

import datetime as dt
import io
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.reasons import Rejected
from pipeline.core.settings import Settings
from pipeline.documents.inspect import InspectLimits, inspect_file
from pipeline.documents.validate import check_content, check_metadata

from .corpus import PAGE_LIMIT, PATIENT_INS, build_hostile_batch, good_pdf_bytes, write_non_utf8_manifest_batch

pytestmark = pytest.mark.slow  # every hostile file through the sandbox

MAX_FILE = 2 * 1024 * 1024
TODAY = dt.date(2026, 1, 15)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "batch"
    return out, build_hostile_batch(out, max_file_bytes=MAX_FILE)


def _verdict(batch: Path, case, settings: Settings) -> str:
    import csv

    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["file"] == case.file)
    path = batch / case.file
    try:
        meta = check_metadata(row, TODAY)
        if path.stat().st_size > settings.max_file_bytes:
            raise Rejected("file_too_large")  # the intake and the spool stop it while streaming
        check_content(path, case.file, meta.ins, settings, want_text=True)
    except Rejected as rejection:
        return rejection.reason
    return ""


def test_each_hostile_file_gets_its_expected_reason_in_the_sandbox(corpus, tmp_path):
    batch, cases = corpus
    settings = Settings(home=tmp_path, pdf_max_pages=PAGE_LIMIT, max_file_bytes=MAX_FILE, validation_timeout_seconds=20)
    outcomes = {case.file: _verdict(batch, case, settings) for case in cases}
    assert outcomes == {case.file: case.expected_reason for case in cases}


def test_a_non_utf8_manifest_is_refused_as_a_whole_with_a_clear_message(tmp_path):
    write_non_utf8_manifest_batch(tmp_path / "batch")
    result = CliRunner().invoke(
        app, ["ingest", str(tmp_path / "batch"), "--source", "hospital:X"], env={"DMP_HOME": str(tmp_path / "home")}
    )
    assert result.exit_code == 2
    assert "not UTF-8" in result.output


LIMITS = InspectLimits(max_pdf_pages=50, max_decompressed_bytes=8 * 1024 * 1024)
GOOD_PDF = good_pdf_bytes()
GOOD_CDA = (
    '<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
    '<code code="11502-2" codeSystem="2.16.840.1.113883.6.1"/><title>Compte rendu</title>'
    f'<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="{PATIENT_INS}"/></patientRole></recordTarget>'
    "<component><structuredBody><component><section><text>Glycemie 5,1 mmol/L</text></section></component></structuredBody></component>"
    "</ClinicalDocument>"
).encode()


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, position, value in edits:
        if not buffer:
            break
        at = position % len(buffer)
        if kind == 0:
            buffer[at] = value
        elif kind == 1:
            del buffer[at : at + value % 64]
        else:
            buffer[at:at] = bytes([value]) * (value % 16 + 1)
    return bytes(buffer)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=12)


def _verdict_or_reason(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        content = inspect_file(path, name, PATIENT_INS, LIMITS, want_text=True)
    except Rejected as rejection:
        assert rejection.reason  # a reason is a verdict
        return
    assert content.mime_type


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_mutated_pdfs_get_a_verdict_or_a_reason_never_an_exception(tmp_path, edits):
    _verdict_or_reason(tmp_path, "doc.pdf", _mutate(GOOD_PDF, edits))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_mutated_cda_documents_get_a_verdict_or_a_reason_never_an_exception(tmp_path, edits):
    _verdict_or_reason(tmp_path, "doc.xml", _mutate(GOOD_CDA, edits))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_pdfs_with_mutated_compressed_streams_get_a_verdict(tmp_path, edits):
    # Recompress a mutated page stream so the damage lands past the parser, in the inflater.
    stream = zlib.compress(_mutate(b"BT /F1 12 Tf 72 720 Td (Compte rendu) Tj ET", edits))
    pdf = io.BytesIO()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    pdf.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(pdf.tell())
        pdf.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = pdf.tell()
    pdf.write(b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets))
    pdf.write(b"trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    _verdict_or_reason(tmp_path, "doc.pdf", pdf.getvalue())


def test_a_file_that_outlasts_the_time_limit_ends_validation_timeout_and_the_next_file_is_checked(corpus, tmp_path):
    batch, _ = corpus
    slow = Settings(home=tmp_path, pdf_max_pages=5000, validation_timeout_seconds=0.05)
    with pytest.raises(Rejected) as caught:
        check_content(batch / "many_pages.pdf", "many_pages.pdf", PATIENT_INS, slow, want_text=True)
    assert caught.value.reason == "validation_timeout"
    # The killed inspector is replaced: the next document gets its verdict.
    normal = slow.model_copy(update={"validation_timeout_seconds": 20})
    assert check_content(batch / "good.pdf", "good.pdf", PATIENT_INS, normal, want_text=False).pages == 1


def test_hostile_files_in_batches_get_the_verdicts_each_gets_alone(corpus, tmp_path):
    from pipeline.documents.validate import ContentCheck
    from tests.documents.test_content_batches import verdict_alone, verdicts_in_batches

    batch, cases = corpus
    settings = Settings(home=tmp_path, pdf_max_pages=PAGE_LIMIT, max_file_bytes=MAX_FILE, validation_timeout_seconds=20)
    # Within the size limit (the spool stops the others), good files between them: each hostile file's
    # neighbours must keep their own verdicts, whatever it did to the child.
    hostile = [case.file for case in cases if (batch / case.file).stat().st_size <= MAX_FILE]
    files = [name for pair in zip(hostile, ["good.pdf"] * len(hostile), strict=True) for name in pair]
    checks = [ContentCheck(batch / name, name, PATIENT_INS, True) for name in files]
    assert verdicts_in_batches(checks, settings) == [verdict_alone(check, settings) for check in checks]
