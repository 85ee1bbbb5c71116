"""A deployment for the tests of a record's life over HTTP (versions, the patient's contributions, the export),
on SQLite or PostgreSQL: the app, two hospitals and an insurer holding API keys, and helpers to deposit."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.identity import with_key
from pipeline.core.settings import Settings
from pipeline.runtime import Runtime
from pipeline.sources import add_source

HOSPITAL = "hospital:CHU-LIFE"
OTHER = "hospital:OTHER-LIFE"
INSURER = "insurer:CNAM-LIFE"
DR = "10001234567"  # a physician, put in the care team by the patient
NURSE = "10007654321"


@dataclass
class World:
    settings: Settings
    rt: Runtime
    client: TestClient
    keys: dict[str, dict[str, str]]

    def token(self, subject: str, kind: str, **claims: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.settings, subject, kind, **claims)}"}

    def patient(self, patient_id: str) -> dict[str, str]:
        return self.token(patient_id, "patient")

    def professional(self, rpps: str, profession: str = "physician") -> dict[str, str]:
        return self.token(rpps, "professional", profession=profession, rpps=rpps)

    def wait(self, url: str, headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
        """The batch's status once every item is final."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.get(url, headers=headers).json()
            if all(item["state"] in ("indexed", "rejected") for item in status["items"]):
                return status
            time.sleep(0.1)
        raise TimeoutError(url)

    def deposit(self, ins: str, source_document_id: str, body: bytes, source: str = HOSPITAL, **metadata: str) -> dict[str, Any]:
        """One document deposited by `source` over HTTP and processed; its item's final status."""
        fields = {"patient_ins": ins, "source_document_id": source_document_id, "title": metadata.pop("title", "Compte rendu"),
                  "document_type": "11488-4", "service_date": "2026-01-15", "author_id": DR, "author_profession": "physician",
                  **metadata}  # fmt: skip
        files = {"metadata": (None, json.dumps(fields), "application/json"), "file": ("report.txt", body, "text/plain")}
        answer = self.client.post("/v1/ingest/documents", files=files, headers=self.keys[source])
        assert answer.status_code == 202, answer.text
        (item,) = self.wait(answer.json()["status_url"], self.keys[source])["items"]
        return item  # type: ignore[no-any-return]


def new_ins() -> str:
    """A valid NIR no other test uses."""
    return with_key(f"1850175{uuid.uuid4().int % 10**6:06d}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp(f"life-{request.param}")
    database = None
    if request.param == "postgresql":
        from infra.services import PostgresDatabase

        database = PostgresDatabase()
        database.start()
    settings = Settings(home=root / "home", database_url=database.url if database else None)
    rt = Runtime.from_settings(settings, prepare=True)
    with rt.sessions() as session:
        keys = {source: {"Authorization": f"Bearer {add_source(session, rt.hmac_secret, source)}"} for source in (HOSPITAL, OTHER, INSURER)}
    with TestClient(create_app(settings)) as client:
        yield World(settings, rt, client, keys)
    rt.close()
    if database is not None:
        database.stop()


def patient_of(world: World, ins: str) -> str:
    from sqlalchemy import select

    from pipeline.index.models import Patient

    with world.rt.sessions() as session:
        return session.scalars(select(Patient.id).where(Patient.ins == ins)).one()
