"""Synthetic sample batches: realistic French medical documents plus a manifest.

`generate_samples(out)` writes a flat folder the intake can read as one hospital batch:

- the documents: PDFs (most), CDA R2 XML documents (about 5 %), and, when `bad` is true,
  about 5 % of faulty files, each kind at least once from 20 documents on;
- `manifest.csv`: one row per listed document (see `MANIFEST_COLUMNS`);
- `expected.csv`: the outcome the pipeline should reach for every file, listed or not
  (see `EXPECTED_COLUMNS`), with the expected class and type codes for good documents.

How the good PDFs tell their type (the classification order: own code, manifest, content):

- most carry a LOINC code in the manifest's `document_type`, some a common name (French or English);
- "empty": no `document_type`, the manifest title names the type;
- "untitled": no `document_type` and a neutral title (`NEUTRAL_TITLE`); the extracted text tells the
  type, with the document's heading for half of them and from its body alone for the other half;
- "filename": no `document_type`, a neutral title and a scan without a text layer; only the file
  name (`doc-000123-compte-rendu-operatoire.pdf`) tells the type;
- "administrative" (about 2 %, at least one from 20 documents on): no `document_type`, a neutral
  title and a text without medical document vocabulary (a change of address, a blank scanned page
  notice...): expected 95 / unknown.

Everything is synthetic (names, identifiers, facilities) and deterministic: the same
(patients, documents, seed, bad) always gives the same bytes. Dates are relative to the fixed
`REFERENCE_DATE`, never to today.
"""

from __future__ import annotations

import csv
import hashlib
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipeline.core.identity import nir_key
from pipeline.index.states import ItemState
from pipeline.ingest.manifest import MANIFEST_COLUMNS
from pipeline.samples.document import Doc, Section
from pipeline.samples.people import Author, Patient, make_authors, make_facilities, make_patients
from pipeline.samples.render import png, render_cda, render_pdf, render_scan
from pipeline.samples.texts.administrative import administrative
from pipeline.samples.texts.emergency import emergency
from pipeline.samples.texts.imaging import imaging
from pipeline.samples.texts.labs import lab
from pipeline.samples.texts.operative import operative
from pipeline.samples.texts.prescriptions import prescription
from pipeline.samples.texts.stays import discharge
from pipeline.samples.vocabulary import COMMON_TYPE_NAMES, DOC_TYPES, NEUTRAL_TITLE, REFERENCE_DATE, UNKNOWN_CLASS, UNKNOWN_TYPE

EXPECTED_COLUMNS: tuple[str, ...] = (
    "file",
    "expected_state",
    "expected_reason",
    "class_code",
    "type_code",
)


# Faulty file kinds, in the order they are first handed out, with their expected reason.
BAD_KINDS: dict[str, str] = {
    "truncated_pdf": "pdf_corrupt",
    "png_as_pdf": "type_mismatch",
    "wrong_ins_key": "invalid_ins",
    "empty_pdf": "empty_file",
    "missing": "missing_file",
}
UNLISTED_REASON = "unlisted_file"
# Kinds that may be handed out more than once (one missing file per batch is enough).
_REPEATABLE_BAD = ("truncated_pdf", "png_as_pdf", "wrong_ins_key", "empty_pdf")


@dataclass(frozen=True)
class SampleSummary:
    """What `generate_samples` wrote.

    `documents` is the number of manifest rows (the `documents` argument); `good` and `bad` count
    the rows of expected.csv whose expected state is `indexed` and `rejected`. The rejected rows
    include the missing file (listed, not written) and the unlisted file (written, not listed),
    so `good + bad == documents + 1` when bad samples are on and `documents >= 20`, else
    `good + bad == documents`. `patients` counts the patients with at least one manifest row
    (the `patients` argument unless there are fewer documents than patients).
    """

    out: Path
    documents: int
    good: int
    bad: int
    patients: int


# Each document type's text (pipeline/samples/texts/) and the kind of facility that writes it (a hospital unless said).
_BUILDERS: dict[str, Callable[[random.Random, Patient, Author, date, int], tuple[list[str], list[list[Section]]]]] = {
    "11490-0": discharge,
    "11502-2": lab,
    "18748-4": imaging,
    "57833-6": prescription,
    "34874-8": operative,
    "15507-7": emergency,
}
_FACILITY_KIND = {"11502-2": "lab", "18748-4": "imaging", "57833-6": "office"}


def _slug(title: str) -> str:
    """A title as file-name words: "Compte rendu d'imagerie" -> "compte-rendu-d-imagerie"."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", title.lower()) if not unicodedata.combining(c))
    return "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in plain).split())


def _pages(rng: random.Random) -> int:
    return rng.choices((1, 2, 3, 4), weights=(50, 30, 14, 6))[0]


def _spread(total: int, share: float, minimum: int) -> int:
    return min(total, max(minimum, round(total * share)))


def _wrong_key(nir: str) -> str:
    key = nir_key(nir[:13])
    return f"{nir[:13]}{key + 1 if key < 97 else key - 1:02d}"


# Rows without a code or name in document_type: how the type shows (see the module docstring).
NO_TYPE_FLAVORS = ("empty", "untitled", "filename", "administrative")


def _row_type(flavor: str, code: str, rng: random.Random) -> str:
    if flavor in NO_TYPE_FLAVORS:
        return ""
    if flavor == "name":
        names = [name for name, c in COMMON_TYPE_NAMES.items() if c == code]
        return rng.choice(names) if names else code
    return code


def generate_samples(out: Path, patients: int = 20, documents: int = 200, seed: int = 0, bad: bool = True) -> SampleSummary:
    """Write a synthetic batch (documents, manifest.csv, expected.csv) into the new folder `out`.

    `out` is created; a ValueError is raised when it exists and is not empty, or when
    `patients` or `documents` is below 1. The manifest has exactly `documents` rows spread over
    `patients` distinct valid NIRs (one in 2A and one in 2B from 3 patients on). With `bad`,
    about 5 % of the rows are faulty (from 20 documents on, at least one of each: truncated PDF,
    PNG named .pdf, wrong INS key, empty file, listed but missing file) and one extra PDF is
    written without a manifest row. Same arguments, same bytes.
    """
    if patients < 1 or documents < 1:
        raise ValueError("patients and documents must be at least 1")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(seed)
    tag = hashlib.sha256(f"{seed}:{patients}:{documents}:{bad}".encode()).hexdigest()[:8].upper()
    people = make_patients(rng, patients)
    authors = make_authors(rng)
    facilities = make_facilities(rng)
    type_codes = list(DOC_TYPES)
    type_weights = [DOC_TYPES[c].weight for c in type_codes]

    # Which rows are faulty, and how.
    bad_kinds: list[str] = []
    if bad:
        if documents >= 20:
            count = max(len(BAD_KINDS), round(documents * 0.05))
            bad_kinds = list(BAD_KINDS) + [_REPEATABLE_BAD[i % len(_REPEATABLE_BAD)] for i in range(count - len(BAD_KINDS))]
        else:
            bad_kinds = list(BAD_KINDS)[: round(documents * 0.05)]
    with_unlisted = bad and documents >= 20
    positions = rng.sample(range(documents), len(bad_kinds))
    bad_at = dict(zip(positions, bad_kinds, strict=True))
    good_positions = [i for i in range(documents) if i not in bad_at]
    cda_at = set(rng.sample(good_positions, _spread(len(good_positions), 0.05, 1 if documents >= 20 else 0)))
    pdf_positions = [i for i in good_positions if i not in cda_at]
    flavors: dict[int, str] = {}
    picked = rng.sample(pdf_positions, min(len(pdf_positions), _spread(len(pdf_positions), 0.1, 2 if documents >= 20 else 0)))
    # "empty": the title tells the type; "untitled": only the text does; "filename": only the file name does.
    cycle = ("empty", "untitled", "name", "name", "filename", "untitled", "name", "name")
    for n, i in enumerate(picked):
        flavors[i] = cycle[n % len(cycle)]
    headless = {i for n, i in enumerate(picked) if n % len(cycle) == 5}  # half the untitled: no heading either
    # Administrative notes and scans draw from their own generator: they do not reshuffle the rest of the batch.
    extra = random.Random(f"{tag}:content")
    plain = [i for i in pdf_positions if i not in flavors]
    for i in extra.sample(plain, min(len(plain), _spread(len(pdf_positions), 0.02, 1 if documents >= 20 else 0))):
        flavors[i] = "administrative"

    # Every patient gets a document first (when there are enough), then a skewed spread.
    owners = list(range(min(patients, documents)))
    rng.shuffle(owners)
    weights = [rng.randint(1, 6) for _ in range(patients)]
    owners += rng.choices(range(patients), weights=weights, k=documents - len(owners))

    manifest_rows: list[dict[str, str]] = []
    expected_rows: list[dict[str, str]] = []
    total = documents + (1 if with_unlisted else 0)
    for i in range(total):
        unlisted = i == documents
        patient = people[owners[i]] if not unlisted else people[rng.randrange(patients)]
        kind = bad_at.get(i, "")
        is_cda = i in cda_at
        code = rng.choices(type_codes, weights=type_weights)[0]
        doc_type = DOC_TYPES[code]
        service_date = REFERENCE_DATE - timedelta(days=rng.randint(0, 3 * 365 - 1))
        # Midwives prescribe here for women of child-bearing age only.
        midwife_ok = patient.sex == 2 and 18 <= patient.age(service_date) <= 45
        author = rng.choice([a for a in authors[code] if midwife_ok or a.profession != "midwife"])
        facility = rng.choice(facilities[_FACILITY_KIND.get(code, "hospital")])
        moment = datetime(
            service_date.year, service_date.month, service_date.day, rng.randint(7, 19), rng.randint(0, 59), rng.randint(0, 59), tzinfo=UTC
        )
        pages = _pages(rng) if kind != "truncated_pdf" else rng.randint(2, 4)
        pages = min(pages, 2) if code == "57833-6" else pages
        intro, content = _BUILDERS[code](rng, patient, author, service_date, pages)
        flavor = flavors.get(i, "code")
        doc = Doc(code, doc_type.title, patient, author, facility, service_date, moment, intro, content, heading=i not in headless)
        if flavor == "administrative":
            doc = administrative(extra, patient, author, extra.choice(facilities["office"] + facilities["hospital"]), service_date, moment)
        source_id = f"SRC-{tag}-{i + 1:06d}"
        name = f"doc-{i + 1:06d}.{'xml' if is_cda else 'pdf'}"
        if flavor == "filename":
            name = f"doc-{i + 1:06d}-{_slug(doc_type.title)}.pdf"
        path = out / name

        # The manifest's document_type: a code, a common name or empty; a CDA's may also differ.
        row_type = _row_type(flavor, code, rng)
        if is_cda:
            row_type = rng.choice(("", code, rng.choice([c for c in type_codes if c != code])))

        if kind == "missing":
            pass
        elif kind == "empty_pdf":
            path.write_bytes(b"")
        elif kind == "png_as_pdf":
            path.write_bytes(png(rng))
        elif kind == "truncated_pdf":
            data = render_pdf(doc)
            path.write_bytes(data[: int(len(data) * 0.4)])
        elif is_cda:
            path.write_bytes(render_cda(doc, source_id, f"SET-{tag}-{i + 1:06d}"))
        elif flavor == "filename":
            path.write_bytes(render_scan(doc, extra))
        else:
            path.write_bytes(render_pdf(doc))

        if unlisted:
            expected_rows.append(_expected(name, UNLISTED_REASON))
            continue
        manifest_rows.append(
            {
                "file": name,
                "patient_ins": _wrong_key(patient.nir) if kind == "wrong_ins_key" else patient.nir,
                "source_document_id": source_id,
                "title": NEUTRAL_TITLE if flavor in ("untitled", "filename", "administrative") else doc.title,
                "document_type": row_type,
                "service_date": service_date.isoformat(),
                "author_id": author.rpps,
                "author_profession": author.profession,
            }
        )
        if kind:
            expected_rows.append(_expected(name, BAD_KINDS[kind]))
        elif flavor == "administrative":
            expected_rows.append(_expected(name, "", UNKNOWN_CLASS, UNKNOWN_TYPE))
        else:  # by its own code, the manifest's code or name, its title, its text or its file name
            wanted = DOC_TYPES[code]
            expected_rows.append(_expected(name, "", wanted.class_code, wanted.code))

    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
    _write_csv(out / "expected.csv", EXPECTED_COLUMNS, expected_rows)
    good = sum(1 for r in expected_rows if r["expected_state"] == ItemState.INDEXED)
    return SampleSummary(
        out=out,
        documents=len(manifest_rows),
        good=good,
        bad=len(expected_rows) - good,
        patients=len(set(owners)),
    )


def _expected(name: str, reason: str, class_code: str = "", type_code: str = "") -> dict[str, str]:
    return {
        "file": name,
        "expected_state": ItemState.REJECTED if reason else ItemState.INDEXED,
        "expected_reason": reason,
        "class_code": class_code,
        "type_code": type_code,
    }


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
