"""What a process loads to send work (`dmp ingest` of a feed) and what a worker process loads at its boot."""

from __future__ import annotations

import subprocess
import sys

DOCUMENT_PIPELINE = ("pipeline.documents.process", "pipeline.documents.batching", "pypdf")


def _loaded_after(statements: str) -> set[str]:
    """The modules among DOCUMENT_PIPELINE loaded by a fresh interpreter after `statements`."""
    code = f"import sys\n{statements}\nprint(' '.join(m for m in {DOCUMENT_PIPELINE!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_sending_a_feeds_chunks_does_not_load_the_document_pipeline() -> None:
    # The CLI, the feed's intake and the actors it declares to send the chunks: 0.15–0.3 s of imports less at its start.
    loaded = _loaded_after(
        "import pipeline.cli\nfrom pipeline.cli.ingest import run_ingest\n"
        "from pipeline.ingest.feed_intake import receive_feed\nfrom pipeline.workers.wiring import wire"
    )
    assert loaded == set()


def test_a_worker_process_loads_the_document_pipeline_at_its_boot() -> None:
    assert _loaded_after("import pipeline.workers.entry") == set(DOCUMENT_PIPELINE)
