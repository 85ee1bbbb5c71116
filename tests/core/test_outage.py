"""Waiting out an outage in place (pipeline/core/outage.py): tries with backoff until the service answers."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from pipeline.core.outage import OutageWatch, Service, outage_of, wait_out
from pipeline.core.reasons import Transient
from pipeline.core.settings import Settings

FAST = Settings(min_backoff_ms=1, max_backoff_ms=5)
DOWN = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def _failing(times: int, failure: Exception) -> tuple[list[int], object]:
    tries: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) <= times:
            raise failure
        return "done"

    return tries, work


def test_work_that_meets_an_outage_waits_in_place_and_goes_through_once_the_service_answers(caplog):
    tries, work = _failing(5, DOWN)
    with caplog.at_level(logging.WARNING, logger="pipeline.core.outage"):
        assert wait_out(work, FAST, OutageWatch(), threading.Event(), hold=60) == "done"
    assert len(tries) == 6
    said = [record.getMessage() for record in caplog.records]
    assert said[0].startswith("database unavailable (ConnectionRefusedError)")
    assert said[-1].startswith("database answers again")
    assert len(said) == 2  # once down, once back: not a line per try


def test_a_failure_that_is_not_an_outage_is_not_waited_out():
    tries, work = _failing(1, IntegrityError("INSERT", {}, ValueError("duplicate key")))
    with pytest.raises(IntegrityError):
        wait_out(work, FAST, OutageWatch(), threading.Event(), hold=60)
    assert len(tries) == 1


def test_a_worker_that_stops_stops_waiting():
    stopping = threading.Event()
    stopping.set()
    tries, work = _failing(1000, Transient("storage_put_failed"))
    with pytest.raises(Transient):
        wait_out(work, FAST, OutageWatch(), stopping, hold=60)
    assert len(tries) == 1


@pytest.mark.parametrize(
    ("failure", "service"),
    [
        (DOWN, Service.DATABASE),
        (Transient("storage_get_failed"), Service.STORAGE),
        (Transient("broker_unavailable ref=x"), Service.BROKER),
        (Transient("kms_decrypt_failed"), Service.KEYS),
        (Transient("document_race item=x"), None),
        (IntegrityError("INSERT", {}, ValueError()), None),
        (ValueError("bug"), None),
    ],
)
def test_outages_are_told_from_other_failures(failure, service):
    assert outage_of(failure) == service
