"""ITI-65 replays racing each other: the SubmissionSet's unique id decides which batch answers both."""

from __future__ import annotations

from sqlalchemy import func, select

from pipeline.index.models import SubmissionSet
from pipeline.ingest.mhd import _recorded, provide
from tests.sharing.bundles import Doc, body, bundle, pdf_bytes


def test_a_submission_set_recorded_by_a_concurrent_replay_is_the_one_answered(rt):
    first = provide(rt, body(bundle([Doc(pdf_bytes())], "urn:oid:1.6")), "hospital:H1", lambda _: None)
    with rt.sessions() as session:
        # The replay found no row, took its batch in, and only then records: the first row wins.
        known, inserted = _recorded(session, "hospital:H1", "urn:oid:1.6", "another-batch", {})
        count = session.scalar(select(func.count()).select_from(SubmissionSet))
    assert (known.id, known.batch_id, inserted, count) == (first.submission_set_id, first.batch_id, False, 1)
