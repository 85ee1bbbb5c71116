"""The whole record as a zip (the decrypted documents and an index file, the care history and the access log), streamed."""

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
from pipeline.access.gate import Access
from pipeline.access.policy import Action, Actor
from pipeline.carehistory.history import WINDOW_MONTHS
from pipeline.core.clock import paris_date
from pipeline.documents.stored import read_document
from pipeline.documents.titles import document_titles
from pipeline.index.models import Document
from pipeline.index.queries import live_documents
from pipeline.record import copy
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


def zip_stream(rt: Runtime, documents: list[Document], extras: dict[str, bytes]) -> Iterator[bytes]:
    """The zip of `documents` (decrypted), their index.json and the `extras` files, in pieces as they are written."""
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
                          "author_id": document.author_id, "mime_type": document.mime_type, "size": document.size,
                          "status": document.status, "version": document.version})  # fmt: skip
        archive.writestr("index.json", json.dumps({"documents": index}, ensure_ascii=False, indent=2))
        for name, data in extras.items():
            archive.writestr(name, data)
    yield spout.drain()


@router.get("/export", response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}})
def export_record(patient_id: str, rt: RuntimeDep, actor: ActorDep) -> StreamingResponse:
    """A full copy of the record for the patient: every document they may read (superseded versions included),
    decrypted, plus index.json; the care history of the 24-month window (care_history.csv, .json) and the access
    log as this reader may read it (access_log.csv, .json)."""
    access = check(rt, actor, Action.EXPORT, patient_id)
    log_access = check(rt, actor, Action.READ_ACCESS_LOG, patient_id)
    headers = {"Content-Disposition": 'attachment; filename="dossier.zip"', "Cache-Control": "no-store"}
    return StreamingResponse(record_copy(rt, actor, access, log_access), media_type="application/zip", headers=headers)


def record_copy(rt: Runtime, actor: Actor, access: Access, log_access: Access) -> Iterator[bytes]:
    """The copy of the record `actor` may take (the API's route and the portal's page alike), as zip pieces:
    every document they may read, decrypted, index.json, the care history of the window and the access log as
    `log_access` lets them read it. `access` and `log_access` are the gate's decisions for EXPORT and
    READ_ACCESS_LOG on the record."""
    with rt.sessions() as session:
        documents = live_documents(session, access.record.patient_id)
    shown = visible(actor, Action.READ_CONTENT, access.record, documents, today=paris_date(), emergency_reason=None)
    care, log = copy.care_rows(rt, access.record.patient_id), copy.log_rows(rt, actor, log_access)
    extras = {
        "care_history.csv": copy.as_csv(care, copy.CARE_COLUMNS),
        "care_history.json": copy.as_json(care, "lines", window_months=WINDOW_MONTHS),
        "access_log.csv": copy.as_csv(log, copy.LOG_COLUMNS),
        "access_log.json": copy.as_json(log, "entries"),
    }
    return zip_stream(rt, shown, extras)
