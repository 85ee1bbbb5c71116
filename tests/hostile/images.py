"""Images for the hostile corpus, assembled by hand or with Pillow: small valid PNG, JPEG and TIFF
files, and a PNG of 400 million pixels that weighs ~50 KB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

HUGE_PNG_SIDE = 20_000


def _png(ihdr: bytes, idat: bytes) -> bytes:
    """A PNG file of one IHDR and one IDAT chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_bytes(width: int = 16, height: int = 16) -> bytes:
    """A small RGB PNG assembled by hand (signature, IHDR, IDAT, IEND)."""
    rows = b"".join(b"\x00" + _png_row(width, y) for y in range(height))  # filter 0 on every row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _png(ihdr, zlib.compress(rows, 9))


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


def write_huge_png(path: Path, side: int = HUGE_PNG_SIDE) -> None:
    """A side x side 1-bit grey PNG of zeros: ~50 KB on disk, 400 million pixels once decoded."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(_png(ihdr, idat))
