"""Reading a small document while its access is audited (pipeline/documents/stored.py, ReadAhead; the gate's
`meanwhile`): the bytes are read once the policy allowed the access, before its entry is appended, and reach the
actor only once the entry is committed."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from api.app import create_app
from pipeline.access.gate import Access, Refused, check
from pipeline.access.policy import Action, Actor, ActorKind
from pipeline.access.tokens import mint_token
from pipeline.core.envelope import IntegrityError
from pipeline.core.logs import ContextFilter, bound
from pipeline.core.settings import Settings
from pipeline.documents.stored import ReadAhead, read_whole
from pipeline.index.models import Document
from pipeline.index.recordkeys import RecordKeys
from pipeline.runtime import Runtime
from pipeline.samples import generate_samples
from tests.conftest import index_batch


def _documents(rt: Runtime, root: Path) -> list[Document]:
    generate_samples(root / "batch", patients=2, documents=4, seed=17, bad=False)
    return index_batch(rt, root / "batch", "hospital:CHU-AHEAD")


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(2)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_a_patients_own_content_read_is_started_before_its_entry_is_appended_on_postgresql(rt, tmp_path):
    document = _documents(rt, tmp_path)[0]
    patient = Actor(document.patient_id, ActorKind.PATIENT)
    happened: list[str] = []

    def watch(_connection, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        if "INSERT INTO audit_entries" in statement:
            happened.append("entry appended")

    event.listen(rt.engine, "before_cursor_execute", watch)
    verdict = check(rt, patient, Action.READ_CONTENT, patient.id, document_id=document.id, meanwhile=lambda d: happened.append(d.id))
    assert isinstance(verdict, Access)
    if rt.engine.dialect.name == "postgresql":
        assert happened == [document.id, "entry appended"]
    else:  # SQLite: the entry is appended in a transaction, and nothing is started meanwhile
        assert happened == ["entry appended"]


def test_a_refused_access_starts_nothing(rt, tmp_path):
    documents = _documents(rt, tmp_path)
    mine = documents[0]
    theirs = next(d for d in documents if d.patient_id != mine.patient_id)
    patient = Actor(mine.patient_id, ActorKind.PATIENT)
    started: list[str] = []
    verdict = check(rt, patient, Action.READ_CONTENT, patient.id, document_id=theirs.id, meanwhile=lambda d: started.append(d.id))
    assert isinstance(verdict, Refused)
    assert started == []


def test_the_bytes_read_ahead_for_a_document_are_its_own_and_another_document_is_read_now(rt, tmp_path):
    first, second = _documents(rt, tmp_path)[:2]
    rt.read_ahead = counting = CountingExecutor()
    ahead = ReadAhead(rt, limit=1 << 20)
    ahead.start(first)
    assert counting.submitted == 1
    assert ahead.body(first) == read_whole(rt, first)
    assert ahead.body(second) == read_whole(rt, second)
    assert counting.submitted == 1


def test_a_document_over_the_limit_is_not_read_ahead(rt, tmp_path):
    document = _documents(rt, tmp_path)[0]
    rt.read_ahead = counting = CountingExecutor()
    ahead = ReadAhead(rt, limit=document.size - 1)
    ahead.start(document)
    assert counting.submitted == 0
    assert ahead.body(document) == read_whole(rt, document)


def test_a_document_whose_record_key_this_process_does_not_hold_is_read_after_the_access_not_ahead(rt, tmp_path):
    document = _documents(rt, tmp_path)[0]
    rt.record_keys = RecordKeys(rt.sessions, rt.keys)  # a process that has not opened this record's key yet
    rt.read_ahead = counting = CountingExecutor()
    ahead = ReadAhead(rt, limit=1 << 20)
    ahead.start(document)  # opening the key would take a connection while the access holds one
    assert counting.submitted == 0
    assert ahead.body(document) == read_whole(rt, document)


class Kept(logging.Handler):
    """Keeps the records it handles, each with the ids bound where it was written (ContextFilter runs there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_damaged_document_read_ahead_raises_its_integrity_error_logged_under_the_requests_id(rt, tmp_path):
    document = _documents(rt, tmp_path)[0]
    path = rt.store._path(document.object_key)
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0x01  # inside the last segment's ciphertext
    path.write_bytes(bytes(damaged))
    kept, logger = Kept(), logging.getLogger("pipeline.core.sealing")
    logger.addHandler(kept)
    try:
        ahead = ReadAhead(rt, limit=1 << 20)
        with bound(request_id="req-ahead"):
            ahead.start(document)
        with pytest.raises(IntegrityError):
            ahead.body(document)
    finally:
        logger.removeHandler(kept)
    assert [getattr(record, "request_id", None) for record in kept.records] == ["req-ahead"]


def test_a_content_read_whose_entry_cannot_be_appended_answers_none_of_the_bytes_read_ahead(tmp_path, monkeypatch):
    from infra.services import PostgresDatabase

    database = PostgresDatabase()
    database.start()
    try:
        settings = Settings(home=tmp_path / "home", database_url=database.url)
        rt = Runtime.from_settings(settings, prepare=True)
        document = _documents(rt, tmp_path)[0]
        read_ahead: list[str] = []
        real_start = ReadAhead.start

        def start(self: ReadAhead, started: Document) -> None:
            read_ahead.append(started.id)
            real_start(self, started)

        def refuse(_connection, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
            if "INSERT INTO audit_entries" in statement:
                raise OperationalError(statement, None, Exception("the index went away"))

        monkeypatch.setattr(ReadAhead, "start", start)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            event.listen(client.app.state.runtime.engine, "before_cursor_execute", refuse)  # type: ignore[attr-defined]
            headers = {"Authorization": f"Bearer {mint_token(settings, document.patient_id, 'patient')}"}
            response = client.get(f"/v1/patients/{document.patient_id}/documents/{document.id}/content", headers=headers)
        assert read_ahead == [document.id]  # read while the entry was being appended
        assert response.status_code >= 500
        assert read_whole(rt, document) not in response.content
        rt.close()
    finally:
        database.stop()
