"""A small record world for the care-team and lookup HTTP tests: patients and documents written straight to
the index (no batch to process), an API client on the same database, and tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.access.tokens import mint_token
from pipeline.core.identity import with_key
from pipeline.index.models import AuditEntry, Batch, BatchItem, Document, Patient, RecordKey
from pipeline.runtime import Runtime

SOURCE = "hospital:H1"


@dataclass
class Api:
    rt: Runtime
    client: TestClient

    def token(self, subject: str, kind: str, **claims: str) -> dict[str, str]:
        if kind == "professional":
            claims.setdefault("profession", "physician")
            claims.setdefault("rpps", subject)
        return {"Authorization": f"Bearer {mint_token(self.rt.settings, subject, kind, **claims)}"}

    def patient(self, pid: str) -> dict[str, str]:
        return self.token(pid, "patient")

    def pro(self, rpps: str, **claims: str) -> dict[str, str]:
        return self.token(rpps, "professional", **claims)

    def entries(self, chain: str) -> list[AuditEntry]:
        with self.rt.sessions() as session:
            return list(session.scalars(select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)))


def new_ins(n: int) -> str:
    """A valid NIR, different for each n."""
    return with_key(f"1800175{n:06d}")


def add_patient(rt: Runtime, ins: str, *, status: str = "open") -> str:
    with rt.sessions.begin() as session:
        patient = Patient(ins=ins, status=status)
        session.add(patient)
        session.flush()
        session.add(RecordKey(patient_id=patient.id, master_key_id="test-master", wrapped=b"wrapped-record-key"))
        return patient.id


def add_document(rt: Runtime, patient_id: str, *, author_id: str, class_code: str = "10", type_code: str = "11488-4") -> str:
    """A live document of the record, deposited by SOURCE and authored by `author_id` (its bytes are not stored)."""
    with rt.sessions.begin() as session:
        key = session.scalars(select(RecordKey).where(RecordKey.patient_id == patient_id)).one()
        batch = Batch(source=SOURCE, manifest_digest=uuid.uuid4().hex, total=1)
        session.add(batch)
        session.flush()
        item = BatchItem(batch_id=batch.id, slot="row:1", file="a.pdf", state="indexed")
        session.add(item)
        session.flush()
        document_id = str(uuid.uuid4())
        session.add(
            Document(
                id=document_id, patient_id=patient_id, source=SOURCE, source_document_id=document_id, batch_item_id=item.id,
                class_code=class_code, type_code=type_code, classified_by="test", author_id=author_id, author_profession="physician",
                mime_type="application/pdf", size=10, content_hmac=uuid.uuid4().hex, object_key=f"objects/{document_id}",
                record_key_id=key.id, wrapped_key=b"wrapped-data-key",
            )
        )  # fmt: skip
        return document_id
