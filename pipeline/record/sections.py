"""The medical profile and the emergency contacts the patient writes (docs/domain.md, "Documents over time").

Structured data, kept as one JSON value per record and section, sealed under the record key
(pipeline/core/sealedfields.py): a dump of the index shows neither, and destroying the record shreds them.
The access gate decides who reads them, each as a class-90 document (pipeline/access/policy.py
`SECTION_VIEWS`); no notification ever names what they hold (writing one queues none).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.core.sealedfields import Sealer, open_text, section_context
from pipeline.index.base import new_id
from pipeline.index.db import transact
from pipeline.index.models import PatientSectionRow
from pipeline.index.repo import insert_ignore
from pipeline.index.states import PatientSection
from pipeline.runtime import Runtime

Content = dict[str, Any]


def write_section(rt: Runtime, patient_id: str, kind: PatientSection, content: Content) -> None:
    """Replace the record's `kind` section with `content` (plain JSON values), sealed under the record key."""
    key = rt.record_keys.for_patient(patient_id).key  # before the transaction: it may make the record key in its own
    sealed = Sealer(key).seal(json.dumps(content, ensure_ascii=False, sort_keys=True), section_context(kind, patient_id))

    def work(session: Session) -> None:
        row = session.scalars(
            select(PatientSectionRow).where(PatientSectionRow.patient_id == patient_id, PatientSectionRow.kind == kind)
        ).first()
        if row is None:
            insert_ignore(session, PatientSectionRow, {"id": new_id(), "patient_id": patient_id, "kind": kind, "content_sealed": sealed})
        else:
            row.content_sealed = sealed

    transact(rt.sessions, work, retries=2)


def read_section(rt: Runtime, patient_id: str, kind: PatientSection) -> Content | None:
    """The record's `kind` section as the patient wrote it, or None when they wrote none."""
    with rt.sessions() as session:
        row = session.scalars(
            select(PatientSectionRow).where(PatientSectionRow.patient_id == patient_id, PatientSectionRow.kind == kind)
        ).first()
    if row is None:
        return None
    text = open_text(rt.record_keys.for_patient(patient_id).key, row.content_sealed, section_context(kind, patient_id))
    content = json.loads(text or "{}")
    return content if isinstance(content, dict) else None
