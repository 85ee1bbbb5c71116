"""Hostile documents for the validators, written at test time as a batch folder the pipeline ingests.

`build_hostile_batch(out)` writes every case file, a `manifest.csv` listing all of them and an
`expected.csv` (`file,expected_state,expected_reason`). The expected reasons are the contract the
validators are held to. Nothing binary is committed: each file is built here, deterministically
(seeded RNG, fixed dates), and the bombs are streamed so building stays fast and small in memory.

`write_non_utf8_manifest_batch(out)` writes a batch whose manifest is Windows-1252, which the
pipeline must refuse as a whole.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, ByteStringObject, DictionaryObject, NameObject, TextStringObject

from pipeline.core.identity import INS_OID_NIR, nir_key, with_key
from pipeline.ingest.manifest import MANIFEST_COLUMNS
from tests.hostile.images import HUGE_PNG_SIDE, jpeg_bytes, png_bytes, tiff_bytes, write_huge_png
from tests.hostile.rawpdf import (
    FLATE_BOMB_BYTES,
    FLOOD_ARRAYS,
    FLOOD_LENGTH,
    HIDDEN_BOMB_BYTES,
    MIB,
    MISSING_OBJECTS,
    missing_objects_pdf,
    object_stream_flood_pdf,
    remote_action_pdf,
    repeated_open_action_pdf,
    write_flate_bomb_pdf,
    write_repeated_contents_bomb_pdf,
    xfa_script_pdf,
)

EXPECTED_COLUMNS = ("file", "expected_state", "expected_reason")

PATIENT_BODY = "1850575123456"
OTHER_PATIENT_BODY = "2920169388012"
PATIENT_INS = with_key(PATIENT_BODY)  # the manifest's patient
OTHER_PATIENT_INS = with_key(OTHER_PATIENT_BODY)  # a valid NIR of someone else


def wrong_key(body13: str) -> str:
    """A well-formed NIR whose control key is wrong (key + 1, wrapping 97 to 01)."""
    return f"{body13}{nir_key(body13) % 97 + 1:02d}"


BAD_PATIENT_INS = wrong_key(PATIENT_BODY)

TITLE = "Compte rendu de biologie"
DOCUMENT_TYPE = "11502-2"
LOINC_OID = "2.16.840.1.113883.6.1"
SNOMED_OID = "2.16.840.1.113883.6.96"
AUTHOR_ID = "10003456789"
AUTHOR_PROFESSION = "physician"
FUTURE_DATE = "2099-01-01"

MANY_PAGES = 1500  # pages in many_pages.pdf
PAGE_LIMIT = 1000  # the page limit the validator tests are expected to configure
ZIP_BOMB_BYTES = 1024 * MIB  # inflated size of zip_bomb.zip's single member
SEED = 20250117
FIXED_DATE = dt.datetime(2025, 1, 17, 9, 30, tzinfo=dt.UTC)
ZIP_DATE = (2025, 1, 17, 9, 30, 0)

REPORT_TEXT = (
    "Compte rendu de biologie\n"
    "Prélèvement du 17/01/2025. Hémoglobine 13,2 g/dL ; plaquettes 250 G/L ; créatinine 78 µmol/L.\n"
    "Conclusion : bilan sans anomalie notable. Dr Martin, biologiste."
)
FRENCH_SENTENCE = "Le patient a été revu en consultation ; la créatinine est stable et le bilan hépatique est normal.\n"


@dataclass(frozen=True)
class HostileCase:
    file: str  # file name in the batch
    expected_state: str  # "indexed" or "rejected"
    expected_reason: str  # reason code, "" when indexed
    note: str  # what the file is


# ---------------------------------------------------------------------------------------------
# Small, valid building blocks


def good_pdf_bytes(text: str = REPORT_TEXT) -> bytes:
    """A small one-page PDF with real text (fpdf2), byte-for-byte reproducible."""
    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(TITLE)
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _pdf_writer() -> PdfWriter:
    """A writer holding a copy of the good one-page PDF."""
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(good_pdf_bytes())))
    return writer


def _fix_id(writer: PdfWriter) -> None:
    """A fixed file /ID: pypdf draws it from `secrets`, and the RC4 key is derived from it."""
    writer._ID = ArrayObject([ByteStringObject(b"hostile-corpus-1"), ByteStringObject(b"hostile-corpus-1")])


def _pdf_writer_bytes(writer: PdfWriter) -> bytes:
    _fix_id(writer)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _with_open_action(action: dict[str, str]) -> bytes:
    writer = _pdf_writer()
    entries = {NameObject(k): NameObject(v) if v.startswith("/") else TextStringObject(v) for k, v in action.items()}
    writer.root_object[NameObject("/OpenAction")] = writer._add_object(DictionaryObject(entries))
    return _pdf_writer_bytes(writer)


def small_zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("compte-rendu.txt", ZIP_DATE), REPORT_TEXT.encode("utf-8"), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def elf_bytes() -> bytes:
    """An ELF64 little-endian x86-64 executable header followed by zeros."""
    ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # e_type: EXEC
        0x3E,  # e_machine: x86-64
        1,  # e_version
        0x401000,  # e_entry
        64,  # e_phoff
        0,  # e_shoff
        0,  # e_flags
        64,  # e_ehsize
        56,  # e_phentsize
        0,  # e_phnum
        64,  # e_shentsize
        0,  # e_shnum
        0,  # e_shstrndx
    )
    return header + bytes(4096)


def cda_bytes(ins: str, doctype: str = "", body: str = "Bilan sans anomalie notable.", code_system: str = LOINC_OID) -> bytes:
    """A well-formed CDA R2 lab report whose recordTarget carries `ins` under the NIR OID."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
{doctype}<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.999.1.1" extension="HOSTILE-CDA"/>
  <code code="{DOCUMENT_TYPE}" codeSystem="{code_system}" codeSystemName="LOINC" displayName="CR d'examens biologiques"/>
  <title>{TITLE}</title>
  <effectiveTime value="20250117093000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget>
    <patientRole>
      <id root="{INS_OID_NIR}" extension="{ins}"/>
      <patient>
        <name><given>Jeanne</given><family qualifier="BR">Durand</family></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="19850517"/>
      </patient>
    </patientRole>
  </recordTarget>
  <component>
    <structuredBody>
      <component>
        <section>
          <title>Résultats</title>
          <text><paragraph>{body}</paragraph></text>
        </section>
      </component>
    </structuredBody>
  </component>
</ClinicalDocument>
""".encode()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ELEMENT lolz (#PCDATA)>
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""

MALFORMED_XML = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><code></ClinicalDocument>'
NOT_CDA_XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<note><to>x</to></note>\n'
HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Compte rendu de biologie</h1><p>Bilan normal.</p><script>alert(1)</script></body></html>\n"

# ---------------------------------------------------------------------------------------------
# Writers for the big files (streamed)


def write_zip_bomb(path: Path, inflated: int = ZIP_BOMB_BYTES) -> None:
    """A zip whose single member inflates to `inflated` zero bytes, written 1 MiB at a time."""
    info = zipfile.ZipInfo("document.pdf", ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = 9  # no public setter before Python 3.13 (where this name is an alias)
    zeros = bytes(MIB)
    with zipfile.ZipFile(path, "w") as archive, archive.open(info, "w") as member:
        for _ in range(inflated // MIB):
            member.write(zeros)
        member.write(bytes(inflated % MIB))


def write_many_pages_pdf(path: Path, pages: int = MANY_PAGES) -> None:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    path.write_bytes(_pdf_writer_bytes(writer))


def write_huge_text(path: Path, size: int) -> None:
    """`size` bytes of French UTF-8 text (whole sentences, padded with ASCII spaces)."""
    line = FRENCH_SENTENCE.encode("utf-8")
    block = line * (64 * 1024 // len(line))
    with path.open("wb") as handle:
        left = size
        while left >= len(block):
            handle.write(block)
            left -= len(block)
        whole = left // len(line)
        handle.write(line * whole)
        handle.write(b" " * (left - whole * len(line)))


# ---------------------------------------------------------------------------------------------
# The batch


def _encrypted_pdf() -> bytes:
    writer = _pdf_writer()
    _fix_id(writer)
    # RC4-128 rather than AES: AES salts and IVs come from `secrets`, RC4 keys only depend on
    # the passwords and the (fixed) /ID, so the file is reproducible. Either way it needs a password.
    writer.encrypt(user_password="secret-patient", owner_password="secret-owner", algorithm="RC4-128")
    # encrypt() keeps /ID[0] (the one the key is derived from) and draws a random /ID[1].
    return _pdf_writer_bytes(writer)


def _javascript_pdf() -> bytes:
    """Document-level JavaScript: catalog /Names /JavaScript name tree -> a /S /JavaScript action.

    Built by hand: pypdf 7 turned `add_js` into a DeprecationError, and its replacement
    `add_open_action(JavaScript(...))` names the entry with a random uuid4 (not reproducible).
    """
    writer = _pdf_writer()
    action = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Action"),
            NameObject("/S"): NameObject("/JavaScript"),
            NameObject("/JS"): TextStringObject("app.alert('Hostile corpus: document-level JavaScript');"),
        }
    )
    tree = DictionaryObject({NameObject("/Names"): ArrayObject([TextStringObject("hostile"), writer._add_object(action)])})
    writer.root_object[NameObject("/Names")] = DictionaryObject({NameObject("/JavaScript"): tree})
    return _pdf_writer_bytes(writer)


def _embedded_exe_pdf() -> bytes:
    writer = _pdf_writer()
    writer.add_attachment("update.exe", b"MZ" + b"\x90\x00" + bytes(1020))
    return _pdf_writer_bytes(writer)


# ---------------------------------------------------------------------------------------------
# A PDF with a zip after it (hand-assembled PDFs: rawpdf.py; images: images.py)


def polyglot_pdf(member: str = "setup.exe", data: bytes = b"MZ\x90\x00" + bytes(1020)) -> bytes:
    """A good PDF followed by a zip: PDF viewers read the PDF, zip tools the archive (its directory is at the end)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(member, ZIP_DATE), data)
    return good_pdf_bytes() + buffer.getvalue()


def build_hostile_batch(out: Path, max_file_bytes: int = 4 * MIB) -> list[HostileCase]:
    """Write the hostile corpus into the folder `out` (created if needed) and return its cases."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    good_pdf = good_pdf_bytes()

    def data(payload: bytes) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(payload)

    # (file, expected state, expected reason, note, writer, manifest overrides)
    table: list[tuple[str, str, str, str, Callable[[Path], None], dict[str, str]]] = [
        ("good.pdf", "indexed", "", "small valid one-page PDF with text (fpdf2)", data(good_pdf), {}),
        ("truncated.pdf", "rejected", "pdf_corrupt", "valid PDF cut at 50%", data(good_pdf[: len(good_pdf) // 2]), {}),
        (
            "garbage.pdf",
            "rejected",
            "pdf_corrupt",
            "%PDF-1.7 header then 20 KiB of seeded random bytes",
            data(b"%PDF-1.7\n" + rng.randbytes(20 * 1024)),
            {},
        ),
        ("encrypted.pdf", "rejected", "pdf_encrypted", "PDF encrypted (RC4-128) with a user password", data(_encrypted_pdf()), {}),
        (
            "javascript.pdf",
            "rejected",
            "pdf_active_content",
            "PDF with document-level JavaScript (/Names /JavaScript name tree)",
            data(_javascript_pdf()),
            {},
        ),
        (
            "openaction_js.pdf",
            "rejected",
            "pdf_active_content",
            "PDF whose catalog /OpenAction is << /S /JavaScript /JS (...) >>",
            data(_with_open_action({"/S": "/JavaScript", "/JS": "app.alert('OpenAction');"})),
            {},
        ),
        (
            "launch.pdf",
            "rejected",
            "pdf_active_content",
            "PDF whose catalog /OpenAction is << /S /Launch /F (calc.exe) >>",
            data(_with_open_action({"/S": "/Launch", "/F": "calc.exe"})),
            {},
        ),
        (
            "embedded_exe.pdf",
            "rejected",
            "pdf_active_content",
            "PDF with an embedded file update.exe starting with MZ",
            data(_embedded_exe_pdf()),
            {},
        ),
        (
            "flate_bomb.pdf",
            "rejected",
            "pdf_too_large",
            f"one-page PDF whose content stream inflates to {FLATE_BOMB_BYTES // MIB} MiB of zeros",
            write_flate_bomb_pdf,
            {},
        ),
        (
            "many_pages.pdf",
            "rejected",
            "pdf_too_large",
            f"valid PDF with {MANY_PAGES} blank pages (page limit {PAGE_LIMIT})",
            write_many_pages_pdf,
            {},
        ),
        ("billion_laughs.xml", "rejected", "xml_forbidden_construct", "billion laughs: nested internal entities", data(BILLION_LAUGHS), {}),
        (
            "external_entity.xml",
            "rejected",
            "xml_forbidden_construct",
            "CDA whose body uses an external entity on file:///etc/passwd",
            data(
                cda_bytes(
                    PATIENT_INS,
                    doctype='<!DOCTYPE ClinicalDocument [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n',
                    body="&e;",
                )
            ),
            {},
        ),
        ("malformed.xml", "rejected", "xml_malformed", "CDA root with an unclosed <code>", data(MALFORMED_XML), {}),
        (
            "cda_other_patient.xml",
            "rejected",
            "patient_mismatch",
            "well-formed CDA R2 for another patient (valid NIR)",
            data(cda_bytes(OTHER_PATIENT_INS)),
            {},
        ),
        (
            "cda_bad_ins.xml",
            "rejected",
            "invalid_ins",
            "well-formed CDA R2 whose recordTarget NIR has a wrong key",
            data(cda_bytes(BAD_PATIENT_INS)),
            {},
        ),
        ("cda_good.xml", "indexed", "", "well-formed CDA R2 for the manifest's patient", data(cda_bytes(PATIENT_INS)), {}),
        ("not_cda.xml", "rejected", "unsupported_type", "well-formed XML that is not a CDA (<note>)", data(NOT_CDA_XML), {}),
        (
            "pdf_header_zip.pdf",
            "rejected",
            "pdf_corrupt",
            "%PDF-1.4 header followed by a valid small zip",
            data(b"%PDF-1.4\n" + small_zip_bytes()),
            {},
        ),
        ("html_as.pdf", "rejected", "type_mismatch", "HTML page named .pdf", data(HTML_PAGE), {}),
        (
            "zip_as_document.zip",
            "rejected",
            "unsupported_type",
            "zip with a text member, listed as a document",
            data(small_zip_bytes()),
            {},
        ),
        (
            "zip_bomb.zip",
            "rejected",
            "unsupported_type",
            f"zip whose single member inflates to {ZIP_BOMB_BYTES // MIB} MiB of zeros",
            write_zip_bomb,
            {},
        ),
        (
            "repeated_open_action.pdf",
            "rejected",
            "pdf_ambiguous",
            "catalog with /OpenAction twice: a view (read by pypdf), then JavaScript (run by viewers)",
            data(repeated_open_action_pdf()),
            {},
        ),
        (
            "repeated_contents_bomb.pdf",
            "rejected",
            "pdf_ambiguous",
            f"page with /Contents twice, the second inflating to {HIDDEN_BOMB_BYTES // MIB} MiB of zeros",
            write_repeated_contents_bomb_pdf,
            {},
        ),
        ("xfa_script.pdf", "rejected", "pdf_active_content", "XFA form whose template runs JavaScript", data(xfa_script_pdf()), {}),
        (
            "gotor_unc.pdf",
            "rejected",
            "pdf_active_content",
            "/OpenAction GoToR to \\\\attacker.example\\share\\cr.pdf (credential leak)",
            data(remote_action_pdf()),
            {},
        ),
        (
            "polyglot_exe.pdf",
            "rejected",
            "pdf_active_content",
            "good PDF followed by a zip holding setup.exe (MZ)",
            data(polyglot_pdf()),
            {},
        ),
        (
            "huge.png",
            "rejected",
            "image_too_large",
            f"{HUGE_PNG_SIDE}x{HUGE_PNG_SIDE} 1-bit PNG of zeros (~50 KB)",
            write_huge_png,
            {},
        ),
        (
            "missing_objects.pdf",
            "indexed",
            "",
            f"one page citing {MISSING_OBJECTS} undefined objects after 1 MiB of comment (null, as readers take them)",
            data(missing_objects_pdf()),
            {},
        ),
        (
            "object_stream_flood.pdf",
            "rejected",
            "pdf_too_large",
            f"a few KB whose object stream inflates into {FLOOD_ARRAYS} arrays of {FLOOD_LENGTH} zeros",
            data(object_stream_flood_pdf()),
            {},
        ),
        (
            "cda_loinc_as_snomed.xml",
            "indexed",
            "",
            "CDA whose LOINC code 11502-2 is given under the SNOMED CT OID (not its own code: classified from the manifest)",
            data(cda_bytes(PATIENT_INS, code_system=SNOMED_OID)),
            {},
        ),
        ("empty.pdf", "rejected", "empty_file", "0 bytes", data(b""), {}),
        (
            "huge.txt",
            "rejected",
            "file_too_large",
            "French plain text of max_file_bytes + 1 MiB",
            lambda path: write_huge_text(path, max_file_bytes + MIB),
            {},
        ),
        ("exe_as.pdf", "rejected", "type_mismatch", "MZ then 4 KiB of zeros, named .pdf", data(b"MZ" + bytes(4096)), {}),
        ("elf_no_ext", "rejected", "unsupported_type", "ELF64 executable header then zeros, no extension", data(elf_bytes()), {}),
        ("note.txt", "indexed", "", "short French UTF-8 text", data((REPORT_TEXT + "\n").encode("utf-8")), {}),
        ("image.png", "indexed", "", "16x16 RGB PNG built with zlib+struct", data(png_bytes()), {}),
        ("photo.jpg", "indexed", "", "16x16 baseline JFIF JPEG (Pillow)", data(jpeg_bytes()), {}),
        ("scan.tiff", "indexed", "", "8x8 grey uncompressed baseline TIFF built by hand", data(tiff_bytes()), {}),
        (
            "future_date.pdf",
            "rejected",
            "invalid_metadata",
            f"good PDF, manifest service_date {FUTURE_DATE}",
            data(good_pdf),
            {"service_date": FUTURE_DATE},
        ),
        (
            "bad_nir.pdf",
            "rejected",
            "invalid_ins",
            "good PDF, manifest patient_ins with a wrong key",
            data(good_pdf),
            {"patient_ins": BAD_PATIENT_INS},
        ),
    ]

    cases: list[HostileCase] = []
    manifest_rows: list[dict[str, str]] = []
    for number, (name, state, reason, note, write, overrides) in enumerate(table, start=1):
        write(out / name)
        cases.append(HostileCase(name, state, reason, note))
        row = {
            "file": name,
            "patient_ins": PATIENT_INS,
            "source_document_id": f"HOSTILE-{number:03d}",
            "title": TITLE,
            "document_type": DOCUMENT_TYPE,
            "service_date": f"2025-01-{number % 28 + 1:02d}",
            "author_id": AUTHOR_ID,
            "author_profession": AUTHOR_PROFESSION,
        }
        row.update(overrides)
        manifest_rows.append(row)

    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
    _write_csv(
        out / "expected.csv",
        EXPECTED_COLUMNS,
        [{"file": c.file, "expected_state": c.expected_state, "expected_reason": c.expected_reason} for c in cases],
    )
    return cases


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]], encoding: str = "utf-8") -> None:
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_non_utf8_manifest_batch(out: Path) -> None:
    """One good PDF and a Windows-1252 manifest with accents: the manifest must be refused whole."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "good.pdf").write_bytes(good_pdf_bytes())
    row = {
        "file": "good.pdf",
        "patient_ins": PATIENT_INS,
        "source_document_id": "HOSTILE-CP1252-1",
        "title": "Compte rendu opératoire",
        "document_type": "34874-8",
        "service_date": "2025-01-17",
        "author_id": AUTHOR_ID,
        "author_profession": AUTHOR_PROFESSION,
    }
    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, [row], encoding="cp1252")
