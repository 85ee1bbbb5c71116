"""A message's documents inspected in one exchange get the verdicts each gets alone (the sample corpus;
the hostile files: tests/hostile/test_verdicts.py)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from pipeline.core.inbox import PACK_DOCUMENTS
from pipeline.core.reasons import Rejected
from pipeline.core.settings import Settings
from pipeline.documents.classify import needs_content
from pipeline.documents.validate import ContentCheck, check_content, check_contents, check_metadata
from pipeline.samples import generate_samples

pytestmark = pytest.mark.slow  # the corpus through the sandbox, twice


def verdict_alone(check: ContentCheck, settings: Settings) -> object:
    try:
        return check_content(check.document, check.filename, check.expected_ins, settings, check.want_text)
    except Rejected as rejection:
        return (rejection.reason, rejection.message)


def verdicts_in_batches(checks: list[ContentCheck], settings: Settings, size: int = PACK_DOCUMENTS) -> list[object]:
    verdicts: list[object] = []
    for start in range(0, len(checks), size):
        for verdict in check_contents(checks[start : start + size], settings):
            verdicts.append((verdict.reason, verdict.message) if isinstance(verdict, Rejected) else verdict)
    return verdicts


def _checks(batch: Path) -> list[ContentCheck]:
    checks = []
    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not (batch / row["file"]).exists():
                continue
            try:
                ins = check_metadata(row, dt.date(2026, 1, 15)).ins
            except Rejected:
                ins = row["patient_ins"]
            checks.append(ContentCheck(batch / row["file"], row["file"], ins, needs_content(row["document_type"])))
    return checks


def test_the_sample_corpus_gets_the_same_verdicts_in_batches_as_one_at_a_time(tmp_path):
    generate_samples(tmp_path / "batch", patients=10, documents=120, seed=2026)
    checks = _checks(tmp_path / "batch")
    settings = Settings(home=tmp_path / "home")
    alone = [verdict_alone(check, settings) for check in checks]
    assert verdicts_in_batches(checks, settings) == alone
    assert verdicts_in_batches(checks, settings.model_copy(update={"validation_sandbox": False})) == alone
    assert sum(isinstance(v, tuple) for v in alone) and sum(not isinstance(v, tuple) for v in alone)  # both kinds met
