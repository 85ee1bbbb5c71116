"""Basic validation: metadata, type sniffing, PDF and CDA checks, each with its reason code."""

import datetime as dt

import pytest
from fpdf import FPDF

from pipeline.identity import with_key
from pipeline.reasons import Rejected
from pipeline.workers.inspect import InspectLimits, inspect_file
from pipeline.workers.validate import check_metadata

NIR = with_key("2900113055123")
TODAY = dt.date(2026, 1, 15)
LIMITS = InspectLimits(max_pdf_pages=100, max_decompressed_bytes=10 * 1024 * 1024)


def check_content(path, filename, ins):
    return inspect_file(path, filename, ins, LIMITS, want_text=True)


def _fields(**overrides):
    fields = {
        "patient_ins": NIR,
        "source_document_id": "S1",
        "service_date": "2025-12-01",
        "author_id": "1",
        "author_profession": "physician",
    }
    fields.update(overrides)
    return fields


def _reason(call):
    with pytest.raises(Rejected) as caught:
        call()
    return caught.value.reason


@pytest.fixture
def pdf_path(tmp_path):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Compte rendu de biologie")
    path = tmp_path / "doc.pdf"
    pdf.output(str(path))
    return path


def test_good_metadata_is_parsed():
    meta = check_metadata(_fields(), TODAY)
    assert (meta.ins, meta.service_date) == (NIR, dt.date(2025, 12, 1))


def test_a_nir_with_a_wrong_key_is_invalid_ins():
    assert _reason(lambda: check_metadata(_fields(patient_ins=NIR[:13] + "00"), TODAY)) == "invalid_ins"


@pytest.mark.parametrize("date", ["2026-01-16", "15/01/2025", ""])
def test_a_future_or_unparsable_service_date_is_invalid_metadata(date):
    assert _reason(lambda: check_metadata(_fields(service_date=date), TODAY)) == "invalid_metadata"


def test_a_pdf_is_accepted_with_its_page_count_and_text(pdf_path):
    content = check_content(pdf_path, "doc.pdf", NIR)
    assert (content.mime_type, content.pages) == ("application/pdf", 1)
    assert "Compte rendu de biologie" in content.text


def test_a_truncated_pdf_is_pdf_corrupt(pdf_path, tmp_path):
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(pdf_path.read_bytes()[: pdf_path.stat().st_size // 2])
    assert _reason(lambda: check_content(cut, "cut.pdf", NIR)) == "pdf_corrupt"


def test_a_pdf_named_as_an_image_is_type_mismatch(pdf_path):
    assert _reason(lambda: check_content(pdf_path, "scan.png", NIR)) == "type_mismatch"


def test_xml_that_is_not_cda_is_unsupported_type(tmp_path):
    path = tmp_path / "note.xml"
    path.write_text('<?xml version="1.0"?><note><to>x</to></note>')
    assert _reason(lambda: check_content(path, "note.xml", NIR)) == "unsupported_type"


def test_a_cda_whose_patient_nir_has_a_bad_key_is_invalid_ins(tmp_path):
    path = tmp_path / "cda.xml"
    path.write_text(_cda(NIR[:13] + f"{(int(NIR[13:]) % 97) + 1:02d}"))
    assert _reason(lambda: check_content(path, "cda.xml", NIR)) == "invalid_ins"


def test_an_unknown_binary_is_unsupported_type(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    assert _reason(lambda: check_content(path, "blob", NIR)) == "unsupported_type"


def _cda(ins: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
        '<code code="11502-2" codeSystem="2.16.840.1.113883.6.1"/>'
        f'<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="{ins}"/></patientRole></recordTarget>'
        "</ClinicalDocument>"
    )


def test_a_cda_document_gives_its_code(tmp_path):
    path = tmp_path / "cda.xml"
    path.write_text(_cda(NIR))
    assert check_content(path, "cda.xml", NIR).cda_code == "11502-2"


def test_a_cda_for_another_patient_is_patient_mismatch(tmp_path):
    path = tmp_path / "cda.xml"
    path.write_text(_cda(with_key("1850575123456")))
    assert _reason(lambda: check_content(path, "cda.xml", NIR)) == "patient_mismatch"


def test_xml_with_entities_is_a_forbidden_construct(tmp_path):
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>')
    assert _reason(lambda: check_content(path, "bomb.xml", NIR)) == "xml_forbidden_construct"


def test_malformed_xml_is_xml_malformed(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text('<?xml version="1.0"?><a><b></a>')
    assert _reason(lambda: check_content(path, "bad.xml", NIR)) == "xml_malformed"


def test_xml_declaring_an_unknown_encoding_is_xml_malformed(tmp_path):
    # Found by the hypothesis mutation test: the parser raises LookupError for an encoding it does not know.
    path = tmp_path / "odd.xml"
    path.write_text('<?xml version="1.0" encoding="U-F-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>')
    assert _reason(lambda: check_content(path, "odd.xml", NIR)) == "xml_malformed"
