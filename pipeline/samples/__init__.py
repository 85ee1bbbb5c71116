"""Synthetic samples for the demo, the tests and the benchmarks.

By what each module makes: `vocabulary` (document types, codes, common names), `people` (patients,
authors, facilities), `document` (a document's pages and sections), `texts/` (the clinical text of
each kind of document), `render` (PDF, CDA, scans, PNG), `batch` (`generate_samples`: a hospital
batch with its manifest and answer key) and `feed` (`write_feed`: an insurer feed).
"""

from pipeline.samples.batch import SampleSummary, generate_samples

__all__ = ["SampleSummary", "generate_samples"]
