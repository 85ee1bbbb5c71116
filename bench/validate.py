"""Validation benchmark: validate + classify on the sample corpus in one process.

value: documents per second through the production path (inspection in the sandbox, then
classification). floor: python-magic sniff + pypdf open alone, in-process, on the same files.
Also reported: the same path with the sandbox off, to show what containment costs.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from pathlib import Path

import magic
from pypdf import PdfReader

from pipeline.core.reasons import Rejected
from pipeline.core.settings import Settings
from pipeline.documents.classify import classify, needs_content
from pipeline.documents.validate import check_content
from pipeline.samples import generate_samples


def _rows(batch: Path) -> list[dict[str, str]]:
    with (batch / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if (batch / row["file"]).exists()]


def _pipeline(batch: Path, rows: list[dict[str, str]], settings: Settings) -> float:
    start = time.perf_counter()
    for row in rows:
        try:
            content = check_content(
                batch / row["file"], row["file"], row["patient_ins"], settings, want_text=needs_content(row["document_type"])
            )
        except Rejected:
            continue
        classify(content.cda_code, row["document_type"], row["title"] or content.title, row["file"], content.text)
    return time.perf_counter() - start


def _floor(batch: Path, rows: list[dict[str, str]]) -> float:
    start = time.perf_counter()
    for row in rows:
        path = batch / row["file"]
        with path.open("rb") as handle:
            mime = magic.from_buffer(handle.read(8192), mime=True)
        if mime == "application/pdf":
            try:
                len(PdfReader(path, strict=False).pages)
            except Exception:  # noqa: BLE001, S112 - the floor only times the open
                continue
    return time.perf_counter() - start


def run(documents: int) -> dict:
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="dmp-bench-validate-") as tmp:
        batch = Path(tmp) / "batch"
        generate_samples(batch, patients=50, documents=documents, seed=2026)
        rows = _rows(batch)
        settings = Settings(home=Path(tmp) / "home")
        _pipeline(batch, rows[:5], settings)  # start the forkserver outside the clock
        floor = _floor(batch, rows)
        contained = _pipeline(batch, rows, settings)
        in_process = _pipeline(batch, rows, settings.model_copy(update={"validation_sandbox": False}))
    n = len(rows)
    return {
        "bench": "validate",
        "metric": "documents_per_second",
        "value": round(n / contained, 1),
        "unit": "docs/s",
        "floor": round(n / floor, 1),
        "ratio": round(floor / contained, 3),
        "documents": n,
        "in_process_docs_per_second": round(n / in_process, 1),
        "sandbox_overhead_ms_per_doc": round((contained - in_process) / n * 1000, 2),
    }
