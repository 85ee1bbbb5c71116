"""Synthetic insurer feeds (CSV or NDJSON) for the demo, tests and benchmarks. Streamed: flat memory."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from pathlib import Path

from pipeline.carehistory.feedformat import ALL_FIELDS
from pipeline.core.identity import with_key
from pipeline.index.states import FeedFormat

ACTS = [
    ("C", "Consultation du medecin generaliste", "physician", "26.50", "18.55"),
    ("G", "Consultation de medecine generale", "physician", "30.00", "21.00"),
    ("AMI", "Acte infirmier", "nurse", "3.15", "1.89"),
    ("AMK", "Seance de kinesitherapie", "physiotherapist", "16.13", "9.68"),
    ("YYYY010", "Radiographie du thorax", "radiologist", "21.28", "14.90"),
    ("3400930000000", "Medicament delivre en officine", "pharmacist", "12.40", "8.06"),
]


def feed_patients(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [with_key(f"{rng.choice('12')}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}"
                     f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}") for _ in range(count)]  # fmt: skip


def write_feed(
    path: Path, lines: int, patients: int = 100, seed: int = 0, today: dt.date | None = None, fmt: FeedFormat = FeedFormat.CSV
) -> list[str]:
    """Write `lines` valid lines over `patients` NIRs, care dates in the 30 months before `today`."""
    rng = random.Random(seed)
    today = today or dt.date.today()
    nirs = feed_patients(patients, seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle) if fmt == FeedFormat.CSV else None
        if writer:
            writer.writerow(ALL_FIELDS)
        for number in range(lines):
            code, label, profession, billed, reimbursed = ACTS[rng.randrange(len(ACTS))]
            care = today - dt.timedelta(days=rng.randint(0, 900))
            row = {
                "line_id": f"L{seed}-{number:09d}",
                "patient_ins": nirs[rng.randrange(patients)],
                "care_date": care.isoformat(),
                "act_code": code,
                "act_label": label,
                "professional_id": f"10{rng.randint(0, 999999999):09d}",
                "professional_name": f"Dr Praticien {rng.randint(1, 500)}",
                "profession": profession,
                "amount_billed": billed,
                "amount_reimbursed": reimbursed,
                "reimbursement_date": min(today, care + dt.timedelta(days=rng.randint(1, 20))).isoformat(),
                "supersedes": "",
            }
            if writer:
                writer.writerow([row[name] for name in ALL_FIELDS])
            else:
                handle.write(json.dumps(row) + "\n")
    return nirs
