"""pipeline.index.db.transact: one unit of work, committed, run again on a conflict another writer won."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.index.db import make_engine, session_factory, transact
from pipeline.index.models import Base, Patient


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'index.db'}")
    Base.metadata.create_all(engine)
    return session_factory(engine)


def _conflict() -> IntegrityError:
    return IntegrityError("INSERT …", {}, Exception("UNIQUE constraint failed"))


def _patient(session: Session, ins: str) -> None:
    session.add(Patient(ins=ins, status="open"))


def _patients(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Patient.ins).order_by(Patient.ins)))


def test_the_work_is_committed_and_its_result_returned(sessions: sessionmaker[Session]) -> None:
    def work(session: Session) -> str:
        _patient(session, "1")
        return "done"

    assert transact(sessions, work) == "done"
    assert _patients(sessions) == ["1"]


def test_a_conflict_rolls_the_attempt_back_and_the_work_runs_again(sessions: sessionmaker[Session]) -> None:
    attempts: list[int] = []

    def work(session: Session) -> None:
        attempts.append(len(attempts) + 1)
        _patient(session, str(len(attempts)))
        session.flush()
        if len(attempts) < 3:
            raise _conflict()

    transact(sessions, work, retries=2)
    assert attempts == [1, 2, 3]
    assert _patients(sessions) == ["3"]  # the failed attempts' writes are gone


def test_the_last_conflict_is_raised_once_the_retries_are_spent(sessions: sessionmaker[Session]) -> None:
    calls: list[None] = []

    def work(session: Session) -> None:
        calls.append(None)
        raise _conflict()

    with pytest.raises(IntegrityError):
        transact(sessions, work, retries=1)
    assert len(calls) == 2


def test_without_retries_a_conflict_is_raised_at_once(sessions: sessionmaker[Session]) -> None:
    calls: list[None] = []

    def work(session: Session) -> None:
        calls.append(None)
        raise _conflict()

    with pytest.raises(IntegrityError):
        transact(sessions, work)
    assert len(calls) == 1


def test_another_error_is_never_retried_and_nothing_is_committed(sessions: sessionmaker[Session]) -> None:
    calls: list[None] = []

    def work(session: Session) -> None:
        calls.append(None)
        _patient(session, "1")
        session.flush()
        raise ValueError("a bug, not a conflict")

    with pytest.raises(ValueError):
        transact(sessions, work, retries=5)
    assert len(calls) == 1
    assert _patients(sessions) == []
