"""Idempotency keys: the first answer kept per source and key, a running request protected, a failed one forgotten."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from pipeline.index.models import IdempotencyRecord
from pipeline.ingest import idempotency
from pipeline.ingest.idempotency import KeyInUse, KeyInvalid, KeyReused, Replay, claim, finish, parse_key, release

ANSWER = {"batch": "b1", "status_url": "/v1/ingest/batches/b1", "total": 3, "resumed": False}


def _claim(rt, key="k1", route="batches", length=100, source="hospital:A"):
    with rt.sessions() as session:
        return claim(session, source, key, route, length)


def _finish(rt, key="k1", source="hospital:A"):
    with rt.sessions() as session:
        finish(session, source, key, 202, ANSWER)


def test_the_first_request_claims_the_key_and_a_retry_gets_its_answer(rt):
    assert _claim(rt) is None
    _finish(rt)
    assert _claim(rt) == Replay(202, ANSWER)


def test_a_retry_while_the_first_request_runs_is_told_to_wait(rt):
    assert _claim(rt) is None
    with pytest.raises(KeyInUse):
        _claim(rt)


def test_keys_belong_to_their_source(rt):
    assert _claim(rt, source="hospital:A") is None
    assert _claim(rt, source="lab:B") is None


@pytest.mark.parametrize("change", [{"route": "feeds"}, {"length": 101}])
def test_a_key_used_for_another_submission_is_refused(rt, change):
    assert _claim(rt) is None
    _finish(rt)
    with pytest.raises(KeyReused):
        _claim(rt, **change)


def test_a_retry_sent_without_length_still_gets_the_answer(rt):
    assert _claim(rt) is None
    _finish(rt)
    assert _claim(rt, length=None) == Replay(202, ANSWER)


def test_a_failed_request_releases_its_key(rt):
    assert _claim(rt) is None
    with rt.sessions() as session:
        release(session, "hospital:A", "k1")
    assert _claim(rt) is None


def test_a_key_left_by_a_dead_process_is_taken_over_once_its_lease_ran_out(rt):
    assert _claim(rt) is None
    with rt.sessions() as session:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.execute(update(IdempotencyRecord).values(lease_until=past))
        session.commit()
    assert _claim(rt) is None
    with pytest.raises(KeyInUse):
        _claim(rt)


def test_a_running_request_keeps_its_lease(rt, monkeypatch):
    monkeypatch.setattr(idempotency, "RENEW_SECONDS", 0.05)
    assert _claim(rt) is None
    with rt.sessions() as session:
        session.execute(update(IdempotencyRecord).values(lease_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        session.commit()
    with idempotency.renewing(rt, "hospital:A", "k1"):
        import time

        time.sleep(0.3)
        with pytest.raises(KeyInUse):
            _claim(rt)


def test_a_key_is_printable_ascii_quotes_optional():
    assert parse_key('"abc-123"') == parse_key("abc-123") == "abc-123"
    for bad in ("", "é", "a\x00b", "x" * 256):
        with pytest.raises(KeyInvalid):
            parse_key(bad)
