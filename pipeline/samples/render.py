"""The writers: a document as a PDF (core fonts, latin-1), as a CDA R2 XML document, as a scanned
page without a text layer; and a small PNG."""

from __future__ import annotations

import io
import random
import struct
import unicodedata
import zlib
from xml.sax.saxutils import escape as _xml_escape

from fpdf import FPDF
from fpdf.fonts import CORE_FONTS_CHARWIDTHS

from pipeline.core.identity import INS_OID_NIR
from pipeline.samples.document import Doc, Table, d
from pipeline.samples.vocabulary import DOC_TYPES, LOINC_OID

_TRANSLIT = str.maketrans(
    {
        "œ": "oe",
        "Œ": "OE",
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "…": "...",
        "€": "EUR",
        "≤": "<=",
        "≥": ">=",
        "\u202f": " ",
        "\u2009": " ",
    }
)


def _latin1(text: str) -> str:
    """Make `text` printable with the PDF core fonts (latin-1 only)."""
    text = text.translate(_TRANSLIT)
    if text.isascii() or all(ord(ch) < 256 for ch in text):
        return text
    return "".join(ch if ord(ch) < 256 else _fold(ch) for ch in text)


def _fold(ch: str) -> str:
    """A character outside latin-1 as its closest latin-1 letters (Ł -> L), or nothing."""
    return "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 256 and not unicodedata.combining(c))


class _Pdf(FPDF):
    facility_line = ""
    address_line = ""
    footer_line = ""

    def header(self) -> None:
        self.set_font("helvetica", "B", 10)
        self.cell(0, 5, self.facility_line, new_x="LMARGIN", new_y="NEXT")
        self.set_font("helvetica", "", 8)
        self.cell(0, 4, self.address_line, new_x="LMARGIN", new_y="NEXT")
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font("helvetica", "", 8)
        self.cell(0, 5, f"{self.footer_line} - page {self.page_no()}/{{nb}}", align="C")


def render_pdf(doc: Doc) -> bytes:
    p = doc.patient
    pdf = _Pdf(format="A4")
    pdf.set_creation_date(doc.moment)
    if doc.heading:
        pdf.set_title(_latin1(doc.title))
    pdf.set_author(_latin1(doc.author.label))
    pdf.set_creator("pipeline.samples")
    pdf.set_auto_page_break(True, margin=18)
    pdf.facility_line = _latin1(doc.facility.name)
    pdf.address_line = _latin1(f"{doc.facility.address} - Tél. {doc.facility.phone} - FINESS {doc.facility.finess}")
    pdf.footer_line = _latin1(f"{p.last.upper()} {p.first} - né{p.e} le {d(p.birth)}")
    for number, sections in enumerate(doc.pages):
        pdf.add_page()
        if number == 0:
            if doc.heading:
                pdf.set_font("helvetica", "B", 15)
                pdf.cell(0, 9, _latin1(doc.title), new_x="LMARGIN", new_y="NEXT", align="C")
            pdf.set_font("helvetica", "", 10)
            pdf.cell(0, 5, _latin1(f"Patient{p.e} : {p.label}, né{p.e} le {d(p.birth)} - INS {p.nir}"), new_x="LMARGIN", new_y="NEXT")
            for line in doc.intro:
                _paragraph(pdf, _latin1(line))
            pdf.ln(2)
        for section in sections:
            pdf.set_font("helvetica", "B", 11)
            pdf.cell(0, 7, _latin1(section.heading), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("helvetica", "", 10)
            for paragraph in section.paragraphs:
                _paragraph(pdf, _latin1(paragraph))
            if section.table is not None:
                _render_table(pdf, section.table)
            pdf.ln(1.5)
    return bytes(pdf.output())


_HELVETICA = CORE_FONTS_CHARWIDTHS["helvetica"]


def _paragraph(pdf: FPDF, text: str, height: float = 5) -> None:
    """Write `text` (regular Helvetica, latin-1) word-wrapped to the page width.

    Greedy wrapping on the core font's widths, one cell per line: several times faster than
    `multi_cell`, whose per-character line breaking dominates the generation time.
    """
    limit = (pdf.epw - 2 * pdf.c_margin) * 1000 / pdf.font_size
    space = _HELVETICA[" "]
    line: list[str] = []
    used = 0
    for word in text.split():
        width = sum(_HELVETICA.get(ch, 556) for ch in word)
        if line and used + space + width > limit:
            pdf.cell(0, height, " ".join(line), new_x="LMARGIN", new_y="NEXT")
            line, used = [], 0
        used += width + (space if line else 0)
        line.append(word)
    pdf.cell(0, height, " ".join(line), new_x="LMARGIN", new_y="NEXT")


def _render_table(pdf: FPDF, table: Table) -> None:
    pdf.set_font("helvetica", "B", 9)
    for text, width in zip(table.header, table.widths, strict=True):
        pdf.cell(width, 6, _latin1(text), border=1)
    pdf.ln()
    pdf.set_font("helvetica", "", 9)
    for row in table.rows:
        for text, width in zip(row, table.widths, strict=True):
            pdf.cell(width, 5.5, _latin1(text), border=1)
        pdf.ln()
    pdf.set_font("helvetica", "", 10)


def _x(text: str) -> str:
    return _xml_escape(text, {'"': "&quot;"})


def render_cda(doc: Doc, source_id: str, set_id: str) -> bytes:
    p, a, f = doc.patient, doc.author, doc.facility
    doc_type = DOC_TYPES[doc.type_code]
    when = doc.moment.strftime("%Y%m%d%H%M%S")
    sections = []
    for page in doc.pages:
        for section in page:
            body = "".join(f"<paragraph>{_x(t)}</paragraph>" for t in section.paragraphs)
            if section.table is not None:
                head = "".join(f"<th>{_x(h)}</th>" for h in section.table.header)
                rows = "".join("<tr>" + "".join(f"<td>{_x(c)}</td>" for c in row) + "</tr>" for row in section.table.rows)
                body += f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            sections.append(
                f"      <component>\n        <section>\n          <title>{_x(section.heading)}</title>\n"
                f"          <text>{body}</text>\n        </section>\n      </component>\n"
            )
    intro = "".join(f"<paragraph>{_x(t)}</paragraph>" for t in doc.intro)
    sections.insert(
        0,
        f"      <component>\n        <section>\n          <title>Informations</title>\n"
        f"          <text>{intro}</text>\n        </section>\n      </component>\n",
    )
    gender = "M" if p.sex == 1 else "F"
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="1.2.250.1.999.1.1" extension="{_x(source_id)}"/>
  <code code="{doc_type.code}" codeSystem="{LOINC_OID}" codeSystemName="LOINC" displayName="{_x(doc_type.display_name)}"/>
  <title>{_x(doc.title)}</title>
  <effectiveTime value="{when}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="1.2.250.1.999.1.2" extension="{_x(set_id)}"/>
  <versionNumber value="1"/>
  <recordTarget>
    <patientRole>
      <id root="{INS_OID_NIR}" extension="{p.nir}"/>
      <patient>
        <name><given>{_x(p.first)}</given><family qualifier="BR">{_x(p.last)}</family></name>
        <administrativeGenderCode code="{gender}" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="{p.birth.strftime("%Y%m%d")}"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="{when}"/>
    <assignedAuthor>
      <id root="1.2.250.1.71.4.2.1" extension="8{a.rpps}"/>
      <assignedPerson><name><given>{_x(a.first)}</given><family>{_x(a.last)}</family></name></assignedPerson>
      <representedOrganization><name>{_x(f.name)}</name></representedOrganization>
    </assignedAuthor>
  </author>
  <custodian>
    <assignedCustodian>
      <representedCustodianOrganization>
        <id root="1.2.250.1.71.4.2.2" extension="1{f.finess}"/>
        <name>{_x(f.name)}</name>
      </representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <component>
    <structuredBody>
{"".join(sections)}    </structuredBody>
  </component>
</ClinicalDocument>
"""
    return xml.encode("utf-8")


def render_scan(doc: Doc, rng: random.Random) -> bytes:
    """A scanned page: one image, no text layer (only the file name can tell what it is)."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(doc.moment)
    pdf.set_creator("pipeline.samples")
    pdf.add_page()
    pdf.image(io.BytesIO(png(rng, 42, 60)), x=10, y=10, w=190, h=271)
    return bytes(pdf.output())


def png(rng: random.Random, width: int = 48, height: int = 32) -> bytes:
    """A small valid grayscale PNG (a noisy gradient, like a scanned strip)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(min(255, (x * 5 + y * 3 + rng.randint(0, 20))) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
