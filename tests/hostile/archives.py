"""One crafted zip per hostile-archive reason, for the API and distributed tests."""

from __future__ import annotations

import io
import stat
import zipfile

MANIFEST = b"file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"
MIB = 1024 * 1024


def build_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def encrypted(data: bytes) -> bytes:
    """`data` (a zip) with every entry flagged encrypted: zipfile cannot write one itself."""
    out = bytearray(data)
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = -1
        while (at := out.find(signature, at + 1)) >= 0:
            out[at + flags_at] |= 0x1
    return bytes(out)


def hostile_archives(total_limit: int) -> dict[str, bytes]:
    """reason -> a zip refused for that reason (`total_limit`: the deployment's uncompressed-size limit)."""
    manifest = ("manifest.csv", MANIFEST)
    innermost = build_zip([("bomb.txt", b"0" * 100)])
    archives = {
        "archive_absolute_path": build_zip([manifest, ("/etc/cron.d/dmp", b"x")]),
        "archive_path_traversal": build_zip([manifest, ("docs/../../outside.pdf", b"%PDF")]),
        "archive_symlink": build_zip([manifest, (symlink_entry("doc.pdf"), b"/etc/passwd")]),
        "archive_nested_too_deep": build_zip([manifest, ("images.zip", build_zip([("again.zip", innermost)]))]),
        "archive_too_large": build_zip([manifest] + [(f"doc-{n}.bin", bytes(range(256)) * 4096) for n in range(total_limit // MIB + 1)]),
        "archive_ratio_exceeded": build_zip([manifest, ("doc.pdf", bytes(4 * MIB))]),
        "archive_encrypted": encrypted(build_zip([manifest, ("doc.pdf", b"%PDF")], zipfile.ZIP_STORED)),
    }
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        archives["archive_duplicate_name"] = build_zip([manifest, ("doc.pdf", b"one"), ("doc.pdf", b"two")])
    return archives
