"""The content read's floor (bench/readfloor.py): the same work as the API's content read, without its machinery."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bench.readfloor import ContentFloor, floor_read
from pipeline.access.audit import verify
from pipeline.core.keys import audit_key
from pipeline.documents.stored import read_whole
from pipeline.index.models import AuditEntry
from pipeline.samples import generate_samples
from tests.conftest import index_batch


def test_the_floor_answers_the_plaintext_and_appends_the_access_to_the_records_chain(rt, tmp_path):
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("the floor sends PostgreSQL's statements")
    generate_samples(tmp_path / "batch", patients=1, documents=2, seed=5, bad=False)
    document = index_batch(rt, tmp_path / "batch", "hospital:CHU-FLOOR")[0]
    floor = ContentFloor(rt, rt.engine.url.render_as_string(hide_password=False))
    try:
        target = floor_read(rt, document)
        assert floor.read(target) == read_whole(rt, document)
        assert floor.read(target) == read_whole(rt, document)
    finally:
        floor.close()
    with rt.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.chain == document.patient_id).order_by(AuditEntry.seq)).all()
        assert [(e.action, e.document_id, e.outcome) for e in entries[-2:]] == [("read_content", document.id, "allowed")] * 2
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))  # after the deposits' entries, unforked
        assert verify(session, audit_key(rt.hmac_secret)) == []
