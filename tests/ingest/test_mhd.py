"""ITI-65 intake: a Bundle becomes a batch like any other (one stored zip, item rows, one message per
document); a replayed SubmissionSet is the same batch; a refused Bundle records and stores nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from pipeline.documents.process import process_item
from pipeline.index.models import BatchItem, Document, DocumentSharing, SubmissionSet
from pipeline.ingest.mhd import provide
from pipeline.sharing.provide import SubmissionRefused
from tests.sharing.bundles import NIR, Doc, body, bundle, cda_bytes, pdf_bytes


def _count(rt, model) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_bundle_is_indexed_through_the_batch_intake_with_its_sharing_metadata(rt):
    sent: list[str] = []
    data = body(bundle([Doc(pdf_bytes(), facility_type="SA07"), Doc(cda_bytes(NIR), content_type="application/xml")], "urn:oid:1.9"))
    provided = provide(rt, data, "hospital:H1", sent.append)
    assert len(sent) == 2 and not provided.replayed
    for item_id in sent:
        process_item(rt, item_id)
    with rt.sessions() as session:
        documents = {d.id: d for d in session.scalars(select(Document))}
        sharing = {row.document_id: row for row in session.scalars(select(DocumentSharing))}
    assert set(documents) == {item.document_id for item in provided.items}
    assert {row.facility_type for row in sharing.values()} == {"SA07", "SA29"}  # the CDA's own header for the CDA
    assert not list(rt.store.list_keys("inbox/"))


def test_a_replayed_submission_set_answers_its_first_batch_and_records_nothing(rt):
    first = provide(rt, body(bundle([Doc(pdf_bytes())], "urn:oid:1.8")), "hospital:H1", lambda _: None)
    items = _count(rt, BatchItem)
    again = provide(rt, body(bundle([Doc(pdf_bytes("other"))], "urn:oid:1.8")), "hospital:H1", lambda _: None)
    assert (again.replayed, again.batch_id, again.submission_set_id) == (True, first.batch_id, first.submission_set_id)
    assert (_count(rt, BatchItem), _count(rt, SubmissionSet)) == (items, 1)


def test_the_same_submission_set_id_from_another_source_is_another_submission(rt):
    first = provide(rt, body(bundle([Doc(pdf_bytes())], "urn:oid:1.7")), "hospital:H1", lambda _: None)
    other = provide(rt, body(bundle([Doc(pdf_bytes())], "urn:oid:1.7")), "lab:L1", lambda _: None)
    assert other.batch_id != first.batch_id and not other.replayed


def test_a_refused_bundle_records_and_stores_nothing(rt):
    with pytest.raises(SubmissionRefused):
        provide(rt, body(bundle([Doc(pdf_bytes(), size=1)])), "hospital:H1", lambda _: None)
    assert (_count(rt, BatchItem), _count(rt, SubmissionSet)) == (0, 0)
    assert not list(rt.store.list_keys())
