"""The care history paged in SQL (pipeline/carehistory/history.py): by offset or by keyset, the pages put end to
end are exactly the whole window's lines in order (ties on a date, corrected lines, lines outside the window or
of another patient left out), and the count is that of the window."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.carehistory.history import care_history, care_history_after, iter_care_history
from tests.carehistory.test_feed import ALICE, BOB, TODAY, _csv, _feed, _line, _patient_id


@pytest.fixture
def alice(rt, tmp_path):  # type: ignore[no-untyped-def]
    """Alice's 40 lines in the window (several a day), 3 before it, one in the future of `as_of`, a corrected one;
    Bob's lines interleaved."""
    rows = [_line(f"A{n:02d}", care=(TODAY - dt.timedelta(days=n // 3 * 40)).isoformat()) for n in range(40)]
    rows += [_line(f"OLD{n}", care=(TODAY - dt.timedelta(days=800 + n)).isoformat()) for n in range(3)]
    rows += [_line(f"B{n:02d}", ins=BOB, care=(TODAY - dt.timedelta(days=n * 5)).isoformat()) for n in range(20)]
    _feed(rt, _csv(tmp_path / "f.csv", rows))
    _feed(rt, _csv(tmp_path / "fix.csv", [_line("A05-fixed", care=rows[5]["care_date"], supersedes="A05")]))
    return _patient_id(rt, ALICE)


def _whole(rt, patient_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    with rt.sessions() as session:
        page = care_history(session, patient_id, as_of=TODAY, page=1, page_size=500, record_keys=rt.record_keys)
    return [item.line_id for item in page.items]


def test_the_window_holds_the_patients_own_current_lines_only(rt, alice):
    whole = _whole(rt, alice)
    assert len(whole) == 40 and "A05" not in whole and "A05-fixed" in whole
    assert not [line for line in whole if line.startswith(("OLD", "B"))]


@pytest.mark.parametrize("page_size", [1, 3, 7, 40])
def test_pages_by_offset_put_end_to_end_are_the_whole_window(rt, alice, page_size):
    read, total = [], set()
    with rt.sessions() as session:
        for page in range(1, 40 // page_size + 3):
            shown = care_history(session, alice, as_of=TODAY, page=page, page_size=page_size, record_keys=rt.record_keys)
            read += [item.line_id for item in shown.items]
            total.add(shown.total)
    assert read == _whole(rt, alice) and total == {40}


@pytest.mark.parametrize("page_size", [1, 3, 7, 40, 500])
def test_reading_by_keyset_gives_the_whole_window_in_order(rt, alice, page_size):
    with rt.sessions() as session:
        read = [item.line_id for item in iter_care_history(session, alice, as_of=TODAY, page_size=page_size, record_keys=rt.record_keys)]
    assert read == _whole(rt, alice)


def test_a_keyset_page_starts_right_after_the_line_it_is_given(rt, alice):
    from sqlalchemy import select

    from pipeline.index.models import CareEvent

    whole = _whole(rt, alice)
    with rt.sessions() as session:
        last = session.execute(select(CareEvent.care_date, CareEvent.id).where(CareEvent.line_id == whole[9])).one()
        page = care_history_after(session, alice, (last.care_date, last.id), limit=5, as_of=TODAY, record_keys=rt.record_keys)
    assert [item.line_id for item in page] == whole[10:15]
