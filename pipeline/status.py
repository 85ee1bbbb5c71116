"""A batch's state for `dmp status` and `dmp ingest`: per item, and counted."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pipeline.index import repo
from pipeline.index.models import Batch
from pipeline.progress import Counts


class UnknownBatch(LookupError):
    pass


def batch_status(session: Session, batch_id: str) -> dict:
    """The JSON document of `dmp status BATCH --json` (shape fixed in DESIGN.md)."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise UnknownBatch(batch_id)
    items = repo.batch_items(session, batch_id)
    documents = repo.documents_by_id(session, [i.document_id for i in items if i.state == "indexed"])
    rows = []
    for item in items:
        document = documents.get(item.document_id) if item.state == "indexed" else None
        rows.append(
            {
                "file": item.file,
                "source_document_id": item.source_document_id,
                "state": item.state,
                "reason": item.reason if item.state == "rejected" else None,
                "message": item.message if item.state == "rejected" else None,
                "document_id": document.id if document else None,
                "class_code": document.class_code if document else None,
                "type_code": document.type_code if document else None,
                "attempts": item.attempts,
            }
        )
    return {"batch": batch.id, "source": batch.source, "total": len(rows), "counts": repo.batch_counts(session, batch_id), "items": rows}


def counts(session: Session, batch_id: str) -> Counts:
    by_state = repo.batch_counts(session, batch_id)
    return Counts(sum(by_state.values()), by_state.get("indexed", 0), by_state.get("rejected", 0))
