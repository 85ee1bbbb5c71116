"""The command line as a newcomer meets it: a folder without data, a forgotten `dmp db upgrade`,
a mistyped setting. Each is one line saying what to do, never a traceback nor a setting's value."""

from __future__ import annotations

import stat

import pytest
from sqlalchemy import create_engine

from pipeline.cli import main
from pipeline.core.keys import load_key_file
from pipeline.index.db import upgrade


def _run(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["status", "0f0c"], ["audit", "verify"], ["sources", "list"], ["representatives", "list", "185057512345673"]],
    ids=["status", "audit-verify", "sources-list", "representatives-list"],
)
def test_a_reading_command_run_where_there_is_no_data_says_so_and_creates_nothing(monkeypatch, capsys, tmp_path, command):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, *command)
    assert code == 2 and err.startswith("error: no DMP data here") and "DMP_HOME" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def distributed(monkeypatch, tmp_path, database_url):
    """A distributed set-up whose operator has not run `dmp db upgrade` yet (the broker is never reached)."""
    monkeypatch.chdir(tmp_path)
    load_key_file(tmp_path / "keys.json", create=True)
    for name, value in {
        "DMP_DATABASE_URL": database_url,
        "DMP_BROKER_URL": "redis://127.0.0.1:9/0",
        "DMP_KEY_FILE": str(tmp_path / "keys.json"),
        "DMP_STORAGE_URL": (tmp_path / "objects").as_uri(),
    }.items():
        monkeypatch.setenv(name, value)
    return database_url


@pytest.mark.parametrize("command", [["status", "0f0c"], ["ingest", "BATCH", "--source", "hospital:X"]], ids=["status", "ingest"])
def test_a_forgotten_db_upgrade_is_named_not_taken_for_an_outage(distributed, capsys, sample_batch, command):
    code, err = _run(capsys, *[str(sample_batch) if arg == "BATCH" else arg for arg in command])
    assert code == 2 and "no schema yet" in err and "dmp db upgrade" in err and "again to resume" not in err


def test_an_index_left_at_an_older_schema_asks_for_dmp_db_upgrade(distributed, capsys):
    engine = create_engine(distributed)
    upgrade(engine, "0003")
    engine.dispose()
    code, err = _run(capsys, "status", "0f0c")
    assert code == 2 and "older than this version" in err and "dmp db upgrade" in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DMP_DATABASE_URL", "postgres:/dmp:s3cr3t@db.example/dmp"),
        ("DMP_DATABASE_URL", "mysql://dmp:s3cr3t@db.example/dmp"),
        ("DMP_STORAGE_URL", "s4://dmp:s3cr3t@bucket"),
        ("DMP_BROKER_URL", "redis:/:s3cr3t@broker.example"),
        ("DMP_S3_ENDPOINT", "minio.example:9000/s3cr3t"),
    ],
    ids=["database-unparsable", "database-no-driver", "storage-scheme", "broker-scheme", "s3-endpoint-no-scheme"],
)
def test_a_mistyped_url_is_one_line_naming_the_setting_not_its_value(monkeypatch, capsys, tmp_path, sample_batch, name, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    code, err = _run(capsys, "ingest", str(sample_batch), "--source", "hospital:X")
    assert code == 2 and err.startswith(f"error: invalid configuration: {name}: ") and len(err.splitlines()) == 1
    assert "s3cr3t" not in err


@pytest.mark.slow  # runs dmp as a process
def test_a_dmp_home_that_cannot_be_a_folder_is_one_line_naming_it(monkeypatch, capsys, tmp_path, sample_batch):
    (tmp_path / "home").write_text("a file, not a folder")
    monkeypatch.setenv("DMP_HOME", str(tmp_path / "home"))
    code, err = _run(capsys, "ingest", str(sample_batch), "--source", "hospital:X")
    assert code == 2 and err.startswith("error: DMP_HOME (") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "command", [["keys", "init"], ["token", "--sub", "185057512345673", "--kind", "patient"]], ids=["keys-init", "token"]
)
def test_a_home_made_for_a_secret_file_is_owner_only(monkeypatch, capsys, tmp_path, command):
    monkeypatch.chdir(tmp_path)
    code, _ = _run(capsys, *command)
    assert code == 0 and stat.S_IMODE((tmp_path / ".dmp").stat().st_mode) == 0o700
