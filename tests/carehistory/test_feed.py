"""The insurer feed and the 24-month care history, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.carehistory.feedformat import ALL_FIELDS, iter_lines
from pipeline.carehistory.feeds import process_chunk
from pipeline.carehistory.history import care_history, window_start
from pipeline.core.clock import paris_date
from pipeline.core.identity import with_key
from pipeline.index.models import CareEvent, FeedRejection, Outbox, Patient
from pipeline.ingest.feed_intake import FeedFile, receive_feed
from pipeline.runtime import Runtime
from pipeline.status import feed_status

TODAY = dt.date(2026, 11, 23)
ALICE = with_key("2850575123456")
BOB = with_key("1920113055123")


@pytest.fixture(autouse=True)
def _small_chunks(rt):
    rt.settings.feed_chunk_lines = 3  # several chunks even for the small feeds written here


def _line(line_id: str, ins: str = ALICE, care: str = "2026-10-01", **extra: str) -> dict[str, str]:
    row = {"line_id": line_id, "patient_ins": ins, "care_date": care, "act_code": "C", "act_label": "Consultation",
           "professional_id": "10001234567", "professional_name": "Dr Martin", "profession": "physician",
           "amount_billed": "26.50", "amount_reimbursed": "18.55", "reimbursement_date": care, "supersedes": ""}  # fmt: skip
    row.update(extra)
    return row


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _feed(rt: Runtime, path: Path, today: dt.date = TODAY, source: str = "insurer:CNAM") -> str:
    chunks: list[str] = []
    result = receive_feed(rt, path, source, chunks.append)
    for chunk_id in chunks:
        process_chunk(rt, chunk_id, today=today)
    return result.feed_id


def _patient_id(rt: Runtime, ins: str) -> str:
    with rt.sessions() as session:
        return session.scalar(select(Patient.id).where(Patient.ins == ins))


def _labels(rt: Runtime, ins: str) -> set[str]:
    """The act labels of the patient's care history, as the record shows them (opened with the record key)."""
    with rt.sessions() as session:
        page = care_history(session, _patient_id(rt, ins), as_of=TODAY, page_size=500, record_keys=rt.record_keys)
    return {item.act_label for item in page.items}


def _history(rt: Runtime, ins: str, as_of: dt.date = TODAY) -> list[str]:
    with rt.sessions() as session:
        page = care_history(session, _patient_id(rt, ins), as_of=as_of, page_size=500, record_keys=rt.record_keys)
        return [item.line_id for item in page.items]


def _count(rt: Runtime, model) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


# The window


def test_a_care_date_exactly_24_months_ago_is_shown_and_the_day_before_is_not(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "f.csv", [_line("in", care="2024-11-23"), _line("out", care="2024-11-22")]))
    assert _history(rt, ALICE) == ["in"]


def test_the_window_ending_on_29_february_starts_on_28_february(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "f.csv", [_line("a", care="2026-02-28"), _line("b", care="2026-02-27")]), today=dt.date(2028, 2, 29))
    assert window_start(dt.date(2028, 2, 29)) == dt.date(2026, 2, 28)
    assert _history(rt, ALICE, as_of=dt.date(2028, 2, 29)) == ["a"]


def test_a_leap_day_care_date_stays_until_its_window_closes(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "f.csv", [_line("leap", care="2024-02-29")]), today=dt.date(2026, 2, 28))
    assert _history(rt, ALICE, as_of=dt.date(2026, 2, 28)) == ["leap"]  # window starts 2024-02-28
    assert _history(rt, ALICE, as_of=dt.date(2026, 3, 1)) == []  # window starts 2024-03-01


def test_today_is_the_paris_date_even_when_utc_is_still_the_day_before():
    assert paris_date(dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC)) == dt.date(2027, 1, 1)
    assert paris_date(dt.datetime(2026, 7, 31, 21, 59, tzinfo=dt.UTC)) == dt.date(2026, 7, 31)
    assert paris_date(dt.datetime(2026, 7, 31, 22, 0, tzinfo=dt.UTC)) == dt.date(2026, 8, 1)


def test_a_care_date_in_the_future_is_rejected_with_its_line_number(rt, tmp_path):
    feed_id = _feed(rt, _csv(tmp_path / "f.csv", [_line("ok"), _line("tomorrow", care="2026-11-24")]))
    with rt.sessions() as session:
        rejections = feed_status(session, feed_id)["rejections"]
    assert [(r["line_number"], r["line_id"], r["reason"]) for r in rejections] == [(3, "tomorrow", "future_care_date")]


def test_the_history_is_newest_first_and_paginated(rt, tmp_path):
    rows = [_line(f"L{day:02d}", care=f"2026-10-{day:02d}") for day in range(1, 8)]
    _feed(rt, _csv(tmp_path / "f.csv", rows))
    with rt.sessions() as session:
        first = care_history(session, _patient_id(rt, ALICE), as_of=TODAY, page=1, page_size=3, record_keys=rt.record_keys)
        third = care_history(session, _patient_id(rt, ALICE), as_of=TODAY, page=3, page_size=3, record_keys=rt.record_keys)
    assert [i.line_id for i in first.items] == ["L07", "L06", "L05"] and first.total == 7
    assert [i.line_id for i in third.items] == ["L01"]


# Lines


def test_each_bad_line_is_rejected_with_its_number_and_reason_and_the_rest_goes_on(rt, tmp_path):
    rows = [
        _line("good1"),
        _line("badnir", ins=ALICE[:13] + "00"),
        _line("baddate", care="01/10/2026"),
        _line("badamount", amount_billed="12.345"),
        _line("negative", amount_reimbursed="-1"),
        _line("", act_code=""),
        _line("good2", ins=BOB),
    ]
    feed_id = _feed(rt, _csv(tmp_path / "f.csv", rows))
    with rt.sessions() as session:
        status = feed_status(session, feed_id)
    got = [(r["line_number"], r["reason"]) for r in status["rejections"]]
    assert got == [(3, "invalid_ins"), (4, "invalid_date"), (5, "invalid_amount"), (6, "invalid_amount"), (7, "missing_field")]
    assert all(r["message"] for r in status["rejections"])
    assert status["counts"]["accepted"] == 2
    assert _history(rt, ALICE) == ["good1"] and _history(rt, BOB) == ["good2"]


def test_a_label_quoted_across_lines_is_one_line_and_the_numbers_after_it_stay_right(rt, tmp_path):
    rows = [_line("good1"), _line("multi", act_label="Consultation,\navec suivi"), _line("good2"), _line("late", care="2099-01-01")]
    feed_id = _feed(rt, _csv(tmp_path / "f.csv", rows))  # physical lines: header 1, good1 2, multi 3-4, good2 5, late 6
    with rt.sessions() as session:
        status = feed_status(session, feed_id)
        patients = session.scalars(select(Patient.id)).all()
        pages = [care_history(session, patient_id, as_of=TODAY, record_keys=rt.record_keys) for patient_id in patients]
        labels = {item.line_id: item.act_label for page in pages for item in page.items}
    assert [(r["line_number"], r["line_id"], r["reason"]) for r in status["rejections"]] == [(6, "late", "future_care_date")]
    assert labels["multi"] == "Consultation,\navec suivi" and set(labels) == {"good1", "multi", "good2"}
    assert status["total"] == 4 and status["counts"]["unchanged"] == 0


def test_a_stray_quote_spoils_its_own_line_only(rt, tmp_path):
    path = _csv(tmp_path / "f.csv", [_line(f"l{n}") for n in range(6)])
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("Consultation", '"Consultation')  # line 3 (l1) opens a quote it never closes
    path.write_text("".join(lines))
    feed_id = _feed(rt, path)
    with rt.sessions() as session:
        status = feed_status(session, feed_id)
    assert [(r["line_number"], r["reason"]) for r in status["rejections"]] == [(3, "malformed_line")]
    assert sorted(_history(rt, ALICE)) == ["l0", "l2", "l3", "l4", "l5"]
    assert status["counts"] == {"accepted": 5, "rejected": 1, "unchanged": 0, "pending_lines": 0}


def test_ndjson_lines_with_bad_json_or_unknown_fields_are_rejected_alone(rt, tmp_path):
    path = tmp_path / "f.ndjson"
    lines = [json.dumps(_line("a")), "{not json", json.dumps({**_line("b"), "secret": "x"}), json.dumps(_line("c", care="2026-09-01"))]
    path.write_text("\n".join(lines) + "\n")
    feed_id = _feed(rt, path)
    with rt.sessions() as session:
        got = [(r["line_number"], r["reason"]) for r in feed_status(session, feed_id)["rejections"]]
    assert got == [(2, "malformed_line"), (3, "unknown_columns")]
    assert _history(rt, ALICE) == ["a", "c"]


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "with-a-quoted-label"])
def test_a_csv_line_in_latin1_is_rejected_for_its_encoding_and_the_rest_goes_on(rt, tmp_path, quoted):
    extra = {"act_label": "Consultation, suivi"} if quoted else {}  # a quote in the chunk: read record by record
    path = _csv(tmp_path / "f.csv", [_line("before", **extra), _line("latin1", act_label="Consultation médecin"), _line("after")])
    path.write_bytes(path.read_bytes().replace("médecin".encode(), "médecin".encode("latin-1")))
    feed_id = _feed(rt, path)
    with rt.sessions() as session:
        status = feed_status(session, feed_id)
    labels = _labels(rt, ALICE)
    assert [(r["line_number"], r["reason"]) for r in status["rejections"]] == [(3, "invalid_encoding")]
    assert "UTF-8" in status["rejections"][0]["message"]
    assert sorted(_history(rt, ALICE)) == ["after", "before"] and not any("\ufffd" in label for label in labels)


def test_an_ndjson_line_in_latin1_is_rejected_for_its_encoding_and_the_rest_goes_on(rt, tmp_path):
    lines = [json.dumps(_line(n, act_label="Consultation médecin"), ensure_ascii=False).encode() for n in ("a", "b", "c")]
    lines[1] = lines[1].decode().encode("latin-1")
    path = tmp_path / "f.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    feed_id = _feed(rt, path)
    with rt.sessions() as session:
        got = [(r["line_number"], r["reason"]) for r in feed_status(session, feed_id)["rejections"]]
    labels = _labels(rt, ALICE)
    assert got == [(2, "invalid_encoding")]
    assert sorted(_history(rt, ALICE)) == ["a", "c"] and labels == {"Consultation médecin"}


def test_a_field_longer_than_its_column_or_holding_nul_is_rejected_alone_on_both_databases(rt, tmp_path):
    """PostgreSQL refuses such a value and, with it, the chunk's whole bulk write: the good lines beside it must still be stored."""
    path = tmp_path / "f.ndjson"
    rows = [
        _line("good1"),
        _line("L" * 129),
        _line("code", act_code="A" * 33),
        _line("who", professional_id="P" * 65, profession="p" * 65),
        _line("nul", act_label="Consul\x00tation"),
        {**_line("key"), "\x00" + "k" * 500: "x"},
        _line("good2", ins=BOB),
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    feed_id = _feed(rt, path)
    with rt.sessions() as session:
        status = feed_status(session, feed_id)
    got = [(r["line_number"], r["line_id"], r["reason"]) for r in status["rejections"]]
    assert got == [
        (2, None, "field_too_long"),
        (3, "code", "field_too_long"),
        (4, "who", "field_too_long"),
        (5, "nul", "malformed_line"),
        (6, "key", "unknown_columns"),
    ]
    assert "professional_id (at most 64), profession (at most 64)" in status["rejections"][2]["message"]
    assert "\x00" not in status["rejections"][4]["message"] and len(status["rejections"][4]["message"]) < 200
    assert _history(rt, ALICE) == ["good1"] and _history(rt, BOB) == ["good2"]


def test_a_line_id_sent_again_with_other_content_is_a_duplicate(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "1.csv", [_line("same")]))
    feed_id = _feed(rt, _csv(tmp_path / "2.csv", [_line("same", amount_billed="99.00"), _line("other")]))
    with rt.sessions() as session:
        assert [r["reason"] for r in feed_status(session, feed_id)["rejections"]] == ["duplicate_line"]
    assert sorted(_history(rt, ALICE)) == ["other", "same"]


def test_resending_the_same_feed_changes_nothing(rt, tmp_path):
    path = _csv(tmp_path / "f.csv", [_line(f"L{i}", ins=[ALICE, BOB][i % 2]) for i in range(7)] + [_line("bad", care="x")])
    first = _feed(rt, path)
    before = (_count(rt, CareEvent), _count(rt, Outbox), _count(rt, FeedRejection))
    again = _feed(rt, path)
    assert again == first
    assert (_count(rt, CareEvent), _count(rt, Outbox), _count(rt, FeedRejection)) == before


def test_the_same_lines_in_another_feed_file_are_not_stored_twice(rt, tmp_path):
    rows = [_line(f"L{i}") for i in range(5)]
    _feed(rt, _csv(tmp_path / "1.csv", rows))
    _feed(rt, _csv(tmp_path / "2.csv", [*rows, _line("new")]))
    assert _count(rt, CareEvent) == 6


def test_a_correction_replaces_the_line_it_supersedes(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "1.csv", [_line("orig", amount_reimbursed="10.00")]))
    _feed(rt, _csv(tmp_path / "2.csv", [_line("fix", amount_reimbursed="18.55", supersedes="orig")]))
    with rt.sessions() as session:
        items = care_history(session, _patient_id(rt, ALICE), as_of=TODAY, record_keys=rt.record_keys).items
    assert [(i.line_id, str(i.amount_reimbursed)) for i in items] == [("fix", "18.55")]


def test_a_correction_that_arrives_before_its_original_still_wins(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "1.csv", [_line("fix", supersedes="orig")]))
    _feed(rt, _csv(tmp_path / "2.csv", [_line("orig")]))
    assert _history(rt, ALICE) == ["fix"]


def test_one_notification_per_patient_per_feed(rt, tmp_path):
    feed_id = _feed(rt, _csv(tmp_path / "f.csv", [_line(f"L{i}", ins=[ALICE, BOB][i % 2]) for i in range(9)]))
    with rt.sessions() as session:
        rows = session.scalars(select(Outbox).where(Outbox.ref_id == feed_id)).all()
    assert sorted(r.kind for r in rows) == ["reimbursement_data", "reimbursement_data"]


def test_each_feed_queues_its_own_notification_for_a_patient_the_worker_notified_for_another(rt, tmp_path):
    first = _feed(rt, _csv(tmp_path / "1.csv", [_line(f"A{i}", ins=[ALICE, BOB][i % 2]) for i in range(9)]))
    second = _feed(rt, _csv(tmp_path / "2.csv", [_line(f"B{i}", ins=[ALICE, BOB][i % 2]) for i in range(9)]))
    with rt.sessions() as session:
        rows = session.execute(select(Outbox.ref_id, Outbox.patient_id)).all()
    assert sorted(ref for ref, _ in rows) == sorted([first, first, second, second])
    assert len(set(rows)) == 4


def test_lines_for_a_closed_record_are_rejected(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "1.csv", [_line("first")]))
    with rt.sessions() as session:
        session.scalars(select(Patient).where(Patient.ins == ALICE)).one().status = "closed"
        session.commit()
    feed_id = _feed(rt, _csv(tmp_path / "2.csv", [_line("second")]))
    with rt.sessions() as session:
        assert [r["reason"] for r in feed_status(session, feed_id)["rejections"]] == ["record_closed"]


def test_lines_for_an_open_record_whose_key_was_destroyed_are_rejected_as_for_a_closed_one(rt, tmp_path):
    _feed(rt, _csv(tmp_path / "1.csv", [_line("first"), _line("other", ins=BOB)]))
    rt.record_keys.destroy(_patient_id(rt, ALICE))
    feed_id = _feed(rt, _csv(tmp_path / "2.csv", [_line("second"), _line("next", ins=BOB)]))
    with rt.sessions() as session:
        assert [(r["line_id"], r["reason"]) for r in feed_status(session, feed_id)["rejections"]] == [("second", "record_closed")]
    assert "next" in _history(rt, BOB)


@pytest.mark.slow  # 6,000 lines
def test_a_chunk_of_thousands_of_bad_lines_is_recorded_in_full(rt, tmp_path):
    path = _csv(tmp_path / "f.csv", [_line(f"bad{i}", care="not a date") for i in range(6000)])
    rt.settings.feed_chunk_lines = 10_000
    feed_id = _feed(rt, path)
    with rt.sessions() as session:
        assert feed_status(session, feed_id)["counts"]["rejected"] == 6000


# Feeds from a stream that is not a local file (an HTTP upload kept in the inbox)


class _Trickle:
    """A byte stream that hands out a few bytes per read, like a network body: no line iteration of its own."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self.data, self.step, self.at = data, step, 0

    def read(self, size: int = -1) -> bytes:
        piece = self.data[self.at : self.at + min(self.step, size if size >= 0 else self.step)]
        self.at += len(piece)
        return piece


def test_lines_are_cut_alike_from_a_trickling_stream_and_from_a_file():
    data = b"a,b\r\nline two\n\nlast without newline"
    assert list(iter_lines(_Trickle(data))) == list(iter_lines(io.BytesIO(data))) == data.splitlines(keepends=True)


def test_a_feed_read_from_a_stream_ends_like_the_same_file(rt, tmp_path):
    path = _csv(tmp_path / "f.csv", [_line("s1"), _line("s2", care="2026-11-24"), _line("s3", ins=BOB), _line("s4")])
    from_file = _feed(rt, path, source="insurer:FILE")
    stream = FeedFile("upload.csv", lambda: contextlib.nullcontext(_Trickle(path.read_bytes())))
    chunks: list[str] = []
    from_stream = receive_feed(rt, stream, "insurer:STREAM", chunks.append)
    for chunk_id in chunks:
        process_chunk(rt, chunk_id, today=TODAY)
    with rt.sessions() as session:
        a, b = feed_status(session, from_file), feed_status(session, from_stream.feed_id)
    assert (a["total"], a["counts"], a["rejections"]) == (b["total"], b["counts"], b["rejections"]) and a["total"] == 4


def test_a_quote_left_open_gives_its_lines_back_one_by_one_after_max_record_lines():
    from pipeline.carehistory.feedformat import MAX_RECORD_LINES, records

    lines = [b'a,"open\n'] + [b"b,c\n"] * (MAX_RECORD_LINES + 20)
    grouped = list(records(lines, quoted=True))
    assert [offset for offset, _ in grouped] == list(range(len(lines))) and all(len(group) == 1 for _, group in grouped)
