"""A document larger than one S3 part travels as a multipart upload while being encrypted."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from pipeline.core.identity import with_key
from pipeline.documents.process import process_item
from pipeline.documents.stored import read_document
from pipeline.index.models import Document
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime

pytestmark = pytest.mark.distributed
HEADER = "file,patient_ins,source_document_id,title,document_type,service_date,author_id,author_profession\n"


def test_a_20_mib_document_is_stored_in_parts_as_ciphertext_and_reads_back(settings, tmp_path):
    batch = tmp_path / "batch"
    batch.mkdir()
    line = b"Compte rendu d'imagerie: pas d'anomalie decelable, controle dans six mois.\n"
    plaintext = line * (20 * 1024 * 1024 // len(line))
    (batch / "scan.txt").write_bytes(plaintext)
    (batch / "manifest.csv").write_text(HEADER + f"scan.txt,{with_key('2770799123456')},BIG-S3,Imagerie,18748-4,2025-03-01,1,physician\n")
    rt = Runtime.from_settings(settings)
    rt.store.ensure_ready()
    sent: list[str] = []
    receive_batch(rt, batch, "hospital:S3", sent.append)
    assert process_item(rt, sent[0]) == "indexed"
    with rt.sessions() as session:
        document = session.scalars(select(Document)).one()
    head = rt.store.client.head_object(Bucket=rt.store.bucket, Key=document.object_key)
    assert "-" in head["ETag"]  # S3 gives multipart objects an ETag "<md5>-<parts>"
    with rt.store.open(document.object_key) as handle:
        assert handle.read(4) == b"DMPE"
    assert hashlib.sha256(b"".join(read_document(rt, document))).digest() == hashlib.sha256(plaintext).digest()
    rt.close()
