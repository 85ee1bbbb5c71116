"""The portal's session rows (pipeline/index/websessions.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from pipeline.index import websessions

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=30)


def test_a_live_session_is_found_by_its_hash_and_an_expired_one_is_not(rt) -> None:
    with rt.sessions() as session:
        websessions.add(session, "a" * 64, b"sealed", NOW, LATER)
        assert websessions.find(session, "a" * 64, NOW).content_sealed == b"sealed"
        assert websessions.find(session, "a" * 64, LATER) is None


def test_a_visit_extends_the_session_and_can_replace_its_content(rt) -> None:
    with rt.sessions() as session:
        websessions.add(session, "b" * 64, b"old", NOW, LATER)
        websessions.touch(session, "b" * 64, LATER, LATER + dt.timedelta(minutes=30), b"new")
        assert websessions.find(session, "b" * 64, LATER).content_sealed == b"new"


def test_a_removed_session_is_gone(rt) -> None:
    with rt.sessions() as session:
        websessions.add(session, "c" * 64, b"x", NOW, LATER)
        websessions.remove(session, "c" * 64)
        assert websessions.find(session, "c" * 64, NOW) is None


def test_purging_deletes_only_the_expired_rows(rt) -> None:
    with rt.sessions() as session:
        websessions.add(session, "d" * 64, b"x", NOW, NOW + dt.timedelta(minutes=1))
        websessions.add(session, "e" * 64, b"x", NOW, LATER)
        assert websessions.purge_expired(session, NOW + dt.timedelta(minutes=5)) == 1
        assert websessions.find(session, "e" * 64, NOW + dt.timedelta(minutes=5)) is not None


def test_making_a_session_purges_the_expired_ones(rt) -> None:
    with rt.sessions() as session:
        websessions.add(session, "f" * 64, b"x", NOW, NOW + dt.timedelta(minutes=1))
        websessions.add(session, "g" * 64, b"x", LATER, LATER + dt.timedelta(minutes=30))
        assert websessions.purge_expired(session, LATER) == 0
