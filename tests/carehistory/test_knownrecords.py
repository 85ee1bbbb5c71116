"""pipeline.carehistory.knownrecords: the records a feed worker read, kept while the count of record changes stays."""

from __future__ import annotations

from pipeline.carehistory.knownrecords import KnownRecords


def test_records_read_under_a_count_are_known_while_it_stays():
    known = KnownRecords()
    assert known.known(5, ["a", "b"]) == ({}, ["a", "b"])
    known.read(5, {"a": ("pa", "ka")})
    assert known.known(5, ["a", "b"]) == ({"a": ("pa", "ka")}, ["b"])


def test_a_count_that_moved_drops_every_record_kept():
    known = KnownRecords()
    known.known(5, ["a"])
    known.read(5, {"a": ("pa", "ka")})
    assert known.known(6, ["a"]) == ({}, ["a"])


def test_records_read_under_a_count_another_chunk_saw_move_since_are_not_kept():
    known = KnownRecords()
    known.known(5, ["a"])
    known.known(6, ["b"])  # another thread's chunk: a record changed meanwhile
    known.read(5, {"a": ("pa", "ka")})
    assert known.known(6, ["a"]) == ({}, ["a"])


def test_a_transaction_reading_an_older_count_knows_nothing_and_drops_nothing():
    known = KnownRecords()
    known.known(6, ["a"])
    known.read(6, {"a": ("pa", "ka")})
    assert known.known(5, ["a"]) == ({}, ["a"])
    assert known.known(6, ["a"]) == ({"a": ("pa", "ka")}, [])


def test_past_the_limit_the_records_kept_are_dropped_before_the_new_ones_go_in():
    known = KnownRecords(limit=2)
    known.known(1, [])
    known.read(1, {"a": ("pa", "ka"), "b": ("pb", "kb")})
    known.read(1, {"c": ("pc", "kc")})
    assert known.known(1, ["a", "b", "c"]) == ({"c": ("pc", "kc")}, ["a", "b"])
