"""Shared fixtures: embedded-mode settings in a temp folder, and a small sample batch."""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from pipeline.core.settings import Settings

# Tests build their Settings explicitly; a developer's DMP_* environment must not leak in.
for _name in [n for n in os.environ if n.startswith("DMP_") and not n.startswith("DMP_TEST_")]:
    del os.environ[_name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` (left out by `make test-fast`): besides the tests marked so, the PostgreSQL twin of every
    test that runs on both databases; its SQLite twin stays in the fast tier."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgresql" in callspec.params.values():
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "dmp-home", quarantine_days=7)


@pytest.fixture(scope="session")
def sample_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.samples import generate_samples

    out = tmp_path_factory.mktemp("samples") / "batch"
    generate_samples(out, patients=6, documents=40, seed=7)
    return out


def zip_folder(folder: Path, only: list[str] | None = None) -> bytes:
    """The files of `folder` (or those named in `only`) as a zip, as a hospital would send the batch."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if only is None or path.name in only:
                archive.write(path, path.name)
    return out.getvalue()


def read_expected(batch: Path) -> dict[str, dict[str, str]]:
    with (batch / "expected.csv").open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path):
    """The same test on SQLite and on a fresh database of the machine's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite3'}"
        return
    from infra.services import PostgresDatabase

    database = PostgresDatabase()
    database.start()
    yield database.url
    database.stop()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite index at the current schema, made once: migrating is most of a small test's time."""
    from pipeline.runtime import Runtime

    folder = tmp_path_factory.mktemp("migrated")
    Runtime.from_settings(Settings(home=folder / "home", database_url=f"sqlite:///{folder / 'index.sqlite3'}"), prepare=True).close()
    return folder / "index.sqlite3"


@pytest.fixture
def rt(database_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    """An embedded-style Runtime (file store, key file) on the database of `database_url`."""
    from pipeline.runtime import Runtime

    if database_url.startswith("sqlite:///"):
        # A copy of the migrated empty index: `prepare` then finds it at the current schema.
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), database_url.removeprefix("sqlite:///"))
    runtime = Runtime.from_settings(Settings(home=tmp_path / "home", database_url=database_url), prepare=True)
    yield runtime
    runtime.close()


def index_batch(rt, batch: Path, source: str) -> list:  # type: ignore[no-untyped-def]
    """Receive a batch and process every item in this process (no broker); return the documents."""
    from sqlalchemy import select

    from pipeline.documents.process import process_item
    from pipeline.index.models import Document
    from pipeline.ingest.intake import receive_batch

    sent: list[str] = []
    receive_batch(rt, batch, source, sent.append)
    for item_id in sent:
        process_item(rt, item_id)
    with rt.sessions() as session:
        return list(session.scalars(select(Document).order_by(Document.id)))


def raw_dump(engine) -> bytes:  # type: ignore[no-untyped-def]
    """Every value of every table, read with plain SQL as a database dump would: text as UTF-8, binary as is."""
    from sqlalchemy import inspect, text

    values: list[bytes] = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                values.extend(v if isinstance(v, bytes | memoryview) else str(v).encode() for v in row if v is not None)
    return b"\n".join(bytes(v) for v in values)
