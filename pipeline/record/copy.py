"""What a copy of the record (export) holds besides its documents (docs/domain.md, "Documents over time"):
the care history of the 24-month window and the access log as its reader may read it, each as CSV and JSON.

The rows are plain values (dates as ISO text, amounts as decimal text), built from the same functions the
routes read them with: the window of pipeline/carehistory/history.py, the reader's view of the log of
pipeline/access/accesslog.py (the patient reads it all; a legal representative not the patient's own actions,
nor any entry about a document hidden from them).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from typing import Any

from pipeline.access.accesslog import access_log
from pipeline.access.gate import Access
from pipeline.access.policy import Actor
from pipeline.carehistory.history import CareItem, care_history
from pipeline.runtime import Runtime

Row = dict[str, Any]
CARE_COLUMNS = tuple(field.name for field in dataclasses.fields(CareItem))
LOG_COLUMNS = ("at", "actor_id", "actor_kind", "profession", "action", "document_id", "outcome", "reason", "emergency", "justification")
CARE_PAGE = 500
LOG_PAGE = 1000


def care_rows(rt: Runtime, patient_id: str) -> list[Row]:
    """Every line of the care history inside the window, newest first, as the route shows them."""
    rows: list[Row] = []
    page = 1
    while True:
        with rt.sessions() as session:
            shown = care_history(session, patient_id, page=page, page_size=CARE_PAGE, record_keys=rt.record_keys)
        rows += [{name: _plain(getattr(item, name)) for name in CARE_COLUMNS} for item in shown.items]
        if len(rows) >= shown.total or not shown.items:
            return rows
        page += 1


def log_rows(rt: Runtime, actor: Actor, access: Access) -> list[Row]:
    """The whole access log as `actor` (allowed `read_access_log` by `access`) may read it, oldest first."""
    rows: list[Row] = []
    while True:
        lines = access_log(rt, actor, access, limit=LOG_PAGE, offset=len(rows))
        rows += [
            {"at": line.entry.at.isoformat(), "actor_id": line.entry.actor_id, "actor_kind": line.entry.actor_kind,
             "profession": line.entry.profession, "action": line.entry.action, "document_id": line.entry.document_id,
             "outcome": line.entry.outcome, "reason": line.reason, "emergency": line.entry.emergency,
             "justification": line.justification}
            for line in lines
        ]  # fmt: skip
        if len(lines) < LOG_PAGE:
            return rows


def _plain(value: object) -> object:
    """A value JSON and CSV write alike: dates ISO, amounts as their decimal text."""
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def as_csv(rows: Sequence[Row], columns: Sequence[str]) -> bytes:
    """The rows as UTF-8 CSV (with a BOM, so a spreadsheet reads the accents), a header first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def as_json(rows: Sequence[Row], key: str, **about: object) -> bytes:
    return json.dumps({**about, key: list(rows)}, ensure_ascii=False, indent=2).encode("utf-8")
