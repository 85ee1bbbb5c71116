"""infra/dmp-entrypoint, the image's entry point: secret settings read from `DMP_<NAME>_FILE`, the
one-shot `init`, and the API's shared metrics folder. A stand-in `dmp` on PATH records what it got."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = str(Path(__file__).resolve().parents[2] / "infra" / "dmp-entrypoint")


@pytest.fixture
def run(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "dmp"
    fake.parent.mkdir()
    # Each call: its arguments on one line, then the DMP_ and PROMETHEUS_ variables it saw.
    fake.write_text(f'#!/bin/sh\necho "args: $*" >> {calls}\nenv | grep -E "^(DMP_|PROMETHEUS_)" | sort >> {calls}\n')
    fake.chmod(0o755)

    def entrypoint(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DMP_", "PROMETHEUS_"))}
        result = subprocess.run(
            [ENTRYPOINT, *args], env={**clean, "PATH": f"{fake.parent}:/usr/bin:/bin", **env}, capture_output=True, text=True
        )
        return result, calls.read_text() if calls.exists() else ""

    return entrypoint


def test_a_secret_setting_is_read_from_its_file_and_the_file_variable_dropped(run, tmp_path):
    (tmp_path / "url").write_text("postgresql+psycopg://dmp:s3cret@db/dmp\n")
    result, calls = run("worker", DMP_DATABASE_URL_FILE=str(tmp_path / "url"), DMP_KEY_FILE="/var/lib/dmp/keys.json")
    assert result.returncode == 0, result.stderr
    assert "DMP_DATABASE_URL=postgresql+psycopg://dmp:s3cret@db/dmp\n" in calls
    assert "DMP_DATABASE_URL_FILE" not in calls
    assert "DMP_KEY_FILE=/var/lib/dmp/keys.json\n" in calls  # a path setting, left as it is


def test_an_empty_setting_is_left_unset(run):
    result, calls = run("worker", DMP_S3_ENDPOINT="", DMP_S3_REGION="eu-west-3")
    assert result.returncode == 0, result.stderr
    assert "DMP_S3_ENDPOINT" not in calls and "DMP_S3_REGION=eu-west-3\n" in calls


def test_an_unreadable_secret_file_stops_the_start_naming_the_variable(run, tmp_path):
    result, calls = run("api", DMP_BROKER_URL_FILE=str(tmp_path / "missing"))
    assert result.returncode == 78
    assert "DMP_BROKER_URL_FILE" in result.stderr and calls == ""


def test_init_creates_the_keys_then_migrates_then_creates_the_bucket(run):
    result, calls = run("init")
    assert result.returncode == 0, result.stderr
    assert [line for line in calls.splitlines() if line.startswith("args:")] == ["args: keys init", "args: db upgrade", "args: store init"]


def test_the_api_processes_get_a_fresh_metrics_folder_of_their_own(run):
    result, calls = run("api", "--workers", "2")
    assert result.returncode == 0, result.stderr
    (folder,) = [line.split("=", 1)[1] for line in calls.splitlines() if line.startswith("PROMETHEUS_MULTIPROC_DIR=")]
    assert Path(folder).is_dir() and not any(Path(folder).iterdir())
    os.rmdir(folder)
