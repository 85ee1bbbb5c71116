"""`dmp review`: the classification review queue (documents indexed with `needs_review`: an unknown
type or a low-confidence decision) and setting a document's type and class by hand.

A change is written with its audit entry in one transaction, on the patient's chain: actor kind
`operator`, action `reclassify`, the new type code as the reason, so the patient's access log shows
who changed what. The queue shows ids, codes, the rule that decided and its confidence, never a
title (sealed: it can name the patient's condition).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.access.audit import AuditEvent, append
from pipeline.documents.classify import vocabulary
from pipeline.index.db import transact
from pipeline.index.models import AuditEntry, Document
from pipeline.runtime import Runtime

OPERATOR_KIND = "operator"
RECLASSIFY = "reclassify"
# The audit entry races other appends to the same chain: so many tries (as append_with_retry).
AUDIT_RETRIES = 7


class ReviewError(ValueError):
    """The change cannot be made: unknown document or type, or a class that is not the type's."""


def review_queue(rt: Runtime, limit: int = 1000) -> list[dict[str, Any]]:
    """Documents waiting for a person to confirm their type (oldest first)."""
    query = select(Document).where(Document.needs_review.is_(True), Document.live).order_by(Document.created_at).limit(limit)
    with rt.sessions() as session:
        documents = session.scalars(query).all()
    return [
        {
            "document": d.id,
            "source": d.source,
            "class_code": d.class_code,
            "type_code": d.type_code,
            "classified_by": d.classified_by,
            "confidence": d.confidence,
            "mime_type": d.mime_type,
            "received_at": d.created_at.isoformat(),
        }
        for d in documents
    ]


@dataclass(frozen=True)
class Reclassified:
    document: str
    class_code: str
    type_code: str
    audit_entry: int


def set_classification(rt: Runtime, document_id: str, type_code: str, operator: str, class_code: str | None = None) -> Reclassified:
    """Give `document_id` the type `type_code` (its class follows from the type table; `class_code`, if
    given, must match it), clear its review flag, and audit the change as `operator`'s."""
    known = vocabulary().by_code
    if type_code not in known:
        raise ReviewError(f"unknown type code {type_code!r} (see pipeline/documents/data/document_types.csv)")
    if class_code is not None and class_code != known[type_code]:
        raise ReviewError(f"type {type_code} belongs to class {known[type_code]}, not {class_code}")
    if not operator.strip():
        raise ReviewError("the operator's name is required: the change is audited")

    at = dt.datetime.now(dt.UTC)

    def reclassify(session: Session) -> AuditEntry:
        """The document's new type and its audit entry, in one transaction."""
        document = session.get(Document, document_id, with_for_update=session.get_bind().dialect.name == "postgresql")
        if document is None or not document.live:
            raise ReviewError(f"no document {document_id}")
        document.type_code, document.class_code = type_code, known[type_code]
        document.classified_by, document.confidence, document.needs_review = f"review:{operator}"[:64], 1.0, False
        event = AuditEvent(
            chain=document.patient_id,
            actor_id=operator[:128],
            actor_kind=OPERATOR_KIND,
            profession=None,
            action=RECLASSIFY,
            document_id=document.id,
            outcome="allowed",
            reason=type_code,
        )
        return append(session, rt.audit_key, event, at)

    entry = transact(rt.sessions, reclassify, retries=AUDIT_RETRIES)
    return Reclassified(document_id, known[type_code], type_code, entry.id)
