"""Documents over time: what a source does to its own documents, and a document's history as a reader sees it.

The source routes take the source's API key, as /v1/ingest does; a source reaches its own documents only,
named by its `source_document_id` (another source's document and a missing one are the same 404). The
history route goes through the access gate like any read: the policy decides each version on its own.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.access import check, visible
from api.deps import ActorDep, EmergencyDep, RuntimeDep, SourceDep
from api.ingest import require_scope
from api.inputs import ClosedBody
from api.problems import PROBLEM_RESPONSES, not_found
from api.routes.documents import DocumentOut, _action
from pipeline.access.policy import Action
from pipeline.core.clock import paris_date
from pipeline.documents import versions
from pipeline.documents.titles import document_titles
from pipeline.index.models import Document

sources = APIRouter(prefix="/v1/ingest/documents", tags=["ingest"], responses=PROBLEM_RESPONSES)
records = APIRouter(prefix="/v1/patients/{patient_id}/documents", tags=["documents"], responses=PROBLEM_RESPONSES)

# documents.source_document_id
SourceDocumentId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


class DocumentRef(ClosedBody):
    source_document_id: SourceDocumentId


class VisibilityIn(DocumentRef):
    announcement_date: dt.date | None = Field(
        description="Hold the document from the patient until this announcement consultation (at most one month after "
        "its deposit, whatever the date says); null releases it."
    )


class VersionOut(BaseModel):
    """One version of a source's document, as its source sees it: no content, no title."""

    id: str
    source_document_id: str
    version: int
    status: str = Field(description="current, superseded or entered-in-error (FHIR DocumentReference.status).")
    supersedes: str | None
    superseded_by: str | None
    deposited_at: dt.datetime
    status_changed_at: dt.datetime | None

    @classmethod
    def of(cls, d: Document) -> VersionOut:
        return cls(id=d.id, source_document_id=d.source_document_id, version=d.version, status=d.status, supersedes=d.supersedes_id,
                   superseded_by=d.superseded_by_id, deposited_at=d.created_at, status_changed_at=d.status_changed_at)  # fmt: skip


class Withdrawn(BaseModel):
    withdrawn: list[str] = Field(description="The versions crypto-shredded, now entered-in-error.")


@sources.get("/versions", response_model=list[VersionOut])
def list_versions(
    rt: RuntimeDep, source: SourceDep, source_document_id: Annotated[str, Query(min_length=1, max_length=256)]
) -> list[VersionOut]:
    """Every version of one of this source's documents, oldest first (withdrawn ones included, as metadata)."""
    require_scope(source, "documents")
    found = versions.source_versions(rt, source.id, source_document_id)
    if not found:
        raise not_found()
    return [VersionOut.of(d) for d in found]


@sources.post("/deprecate", response_model=VersionOut)
def deprecate_document(body: DocumentRef, rt: RuntimeDep, source: SourceDep) -> VersionOut:
    """The current version becomes superseded with no successor: listed no more, still in the document's history."""
    require_scope(source, "documents")
    document = versions.deprecate(rt, source.id, body.source_document_id)
    if document is None:
        raise not_found()
    return VersionOut.of(document)


@sources.post("/withdraw", response_model=Withdrawn)
def withdraw_document(body: DocumentRef, rt: RuntimeDep, source: SourceDep) -> Withdrawn:
    """A document sent in error (to the wrong patient): every version erased for good (its key destroyed), marked
    entered-in-error; its audit entries stay; the patient is told, without medical content."""
    require_scope(source, "documents")
    withdrawn = versions.withdraw(rt, source.id, body.source_document_id)
    if not withdrawn:
        raise not_found()
    return Withdrawn(withdrawn=withdrawn)


@sources.put("/visibility", response_model=VersionOut)
def set_visibility(body: VisibilityIn, rt: RuntimeDep, source: SourceDep) -> VersionOut:
    """The author holds its current version from the patient until the announcement consultation, or releases it."""
    require_scope(source, "documents")
    document = versions.set_hold(rt, source.id, body.source_document_id, body.announcement_date)
    if document is None:
        raise not_found()
    return VersionOut.of(document)


@records.get("/{document_id}/history", response_model=list[DocumentOut])
def document_history(patient_id: str, document_id: str, rt: RuntimeDep, actor: ActorDep, emergency: EmergencyDep) -> list[DocumentOut]:
    """Every version of the document this actor may see, oldest first (`status` says which is current). The
    policy decides each version on its own; a version withdrawn in error is in no history."""
    action = _action(emergency, Action.READ_METADATA)
    access = check(rt, actor, action, patient_id, document_id=document_id, emergency_reason=emergency)
    assert access.document is not None
    with rt.sessions() as session:
        chain = versions.chain_of(session, access.document)
    shown = visible(actor, action, access.record, chain, today=paris_date(), emergency_reason=emergency)
    titles = document_titles(rt, shown)
    return [DocumentOut.of(document, titles[document.id]) for document in shown]
