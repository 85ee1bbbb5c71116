"""Shared fixtures: embedded-mode settings in a temp folder, and a small sample batch."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from pipeline.settings import Settings

# Tests build their Settings explicitly; a developer's DMP_* environment must not leak in.
for _name in [n for n in os.environ if n.startswith("DMP_") and not n.startswith("DMP_TEST_")]:
    del os.environ[_name]


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "dmp-home", quarantine_days=7)


@pytest.fixture(scope="session")
def sample_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.samples import generate_samples

    out = tmp_path_factory.mktemp("samples") / "batch"
    generate_samples(out, patients=6, documents=40, seed=7)
    return out


def read_expected(batch: Path) -> dict[str, dict[str, str]]:
    with (batch / "expected.csv").open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}
