"""The whole record as a zip (the decrypted documents and an index file), streamed."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from typing import IO, cast

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.access import check, visible
from api.deps import ActorDep, RuntimeDep
from api.headers import EXTENSIONS
from api.problems import PROBLEM_RESPONSES
from pipeline.access.policy import Action
from pipeline.core.clock import paris_date
from pipeline.documents.stored import read_document
from pipeline.documents.titles import document_titles
from pipeline.index.models import Document
from pipeline.index.queries import live_documents
from pipeline.runtime import Runtime

router = APIRouter(prefix="/v1/patients/{patient_id}", tags=["record"], responses=PROBLEM_RESPONSES)


class _Spout:
    """A write-only, non-seekable file for zipfile: what is written is handed out in pieces."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out, self.pieces = b"".join(self.pieces), []
        return out


def zip_stream(rt: Runtime, documents: list[Document]) -> Iterator[bytes]:
    """The zip of `documents` (decrypted) and their index.json, in pieces as they are written (the API and the portal)."""
    spout = _Spout()
    index = []
    titles = document_titles(rt, documents)
    with zipfile.ZipFile(
        cast(IO[bytes], spout), "w", compression=zipfile.ZIP_DEFLATED
    ) as archive:  # write, tell, flush: all a zip writer needs
        for number, document in enumerate(documents, start=1):
            name = f"{number:05d}-{document.class_code}-{document.type_code}{EXTENSIONS.get(document.mime_type, '.txt')}"
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in read_document(rt, document):
                    member.write(chunk)
                    yield spout.drain()
            index.append({"file": name, "id": document.id, "title": titles[document.id], "class_code": document.class_code,
                          "type_code": document.type_code, "service_date": str(document.service_date), "source": document.source,
                          "author_id": document.author_id, "mime_type": document.mime_type, "size": document.size})  # fmt: skip
        archive.writestr("index.json", json.dumps({"documents": index}, ensure_ascii=False, indent=2))
    yield spout.drain()


@router.get("/export", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}})
def export_record(patient_id: str, rt: RuntimeDep, actor: ActorDep) -> StreamingResponse:
    """A full copy of the record for the patient: every document they may read, decrypted, plus index.json."""
    access = check(rt, actor, Action.EXPORT, patient_id)
    with rt.sessions() as session:
        documents = live_documents(session, patient_id)
    shown = visible(actor, Action.READ_CONTENT, access.record, documents, today=paris_date(), emergency_reason=None)
    headers = {"Content-Disposition": 'attachment; filename="dossier.zip"', "Cache-Control": "no-store"}
    return StreamingResponse(zip_stream(rt, shown), media_type="application/zip", headers=headers)
