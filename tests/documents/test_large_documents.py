"""A large document travels through intake and sealing in bounded memory (never held whole)."""

from __future__ import annotations

import tracemalloc
import zipfile

import pytest

from pipeline.core.identity import with_key
from pipeline.documents.process import process_item
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime

pytestmark = pytest.mark.slow  # 48 MiB documents

SIZE = 48 * 1024 * 1024
HEADER = "file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"


def _big_zip(path) -> None:
    line = b"Resultat de biologie: hemoglobine 13,2 g/dL, plaquettes 250 G/L, creatinine 78 umol/L.\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "manifest.csv", HEADER + f"big.txt,{with_key('1850575123456')},BIG-1,Compte rendu de biologie,,2025-01-02,1,physician\n"
        )
        with archive.open("big.txt", "w", force_zip64=True) as member:
            for _ in range(SIZE // len(line)):
                member.write(line)


def test_a_48_mib_zipped_document_is_ingested_and_sealed_in_bounded_memory(embedded_settings, tmp_path):
    archive = tmp_path / "big.zip"
    _big_zip(archive)
    rt = Runtime.from_settings(embedded_settings, prepare=True)
    sent: list[str] = []
    tracemalloc.start()
    try:
        receive_batch(rt, archive, "lab:BIG", sent.append)
        state = process_item(rt, sent[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        rt.close()
    assert state == "indexed"
    assert peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a {SIZE / 2**20:.0f} MiB document"
