"""An ITI-65 Provide Document Bundle built from manifest rows and their bytes: what a Document Source sends.

The inverse of `pipeline.sharing.provide.read_submission`, for senders that have a manifest (the benchmark
deposits the same documents both ways with it; README's worked example is one of its Bundles).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping, Sequence

from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import DocumentReference, DocumentReferenceContent, DocumentReferenceContext
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.list import ListEntry
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference

from pipeline.core.identity import INS_OID_NIR
from pipeline.sharing.resources import RPPS_SYSTEM
from pipeline.sharing.valuesets import ValueSetName, is_type_coding, lookup, type_system

MIME_TYPES = {".pdf": "application/pdf", ".xml": "application/xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
              ".tif": "image/tiff", ".tiff": "image/tiff", ".txt": "text/plain"}  # fmt: skip


def _request(kind: str) -> BundleEntryRequest:
    return BundleEntryRequest(method="POST", url=kind)


def _document(row: Mapping[str, str], content: bytes, binary_url: str, content_type: str) -> DocumentReference:
    profession = lookup(ValueSetName.PROFESSIONS, row.get("author_profession"))
    role = PractitionerRole(
        id="role",
        practitioner=Reference(reference="#author"),
        code=[CodeableConcept(coding=[Coding(system=profession.system, code=profession.code)])] if profession else None,
    )
    author = Practitioner(id="author", identifier=[Identifier(system=RPPS_SYSTEM, value=row["author_id"])])
    type_code = row.get("document_type") or ""
    return DocumentReference(
        contained=[author, role],
        masterIdentifier=Identifier(system="urn:ietf:rfc:3986", value=f"urn:dmp:{row['source_document_id']}"),
        status="current",
        type=CodeableConcept(coding=[Coding(system=type_system(type_code), code=type_code)]) if is_type_coding(None, type_code) else None,
        subject=Reference(identifier=Identifier(system=f"urn:oid:{INS_OID_NIR}", value=row["patient_ins"])),
        author=[Reference(reference="#role")],
        description=row.get("title") or None,
        content=[
            DocumentReferenceContent(
                attachment=Attachment(
                    contentType=content_type,
                    url=binary_url,
                    size=len(content),
                    hash=base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode(),
                )
            )
        ],
        context=DocumentReferenceContext(period=Period(start=row["service_date"][:10])),
    )


def provide_bundle(ins: str, rows: Sequence[Mapping[str, str]], contents: Sequence[bytes], submission_id: str | None = None) -> Bundle:
    """The ITI-65 transaction for one patient's documents (manifest rows, README's columns, and their bytes)."""
    entries: list[BundleEntry] = []
    references: list[str] = []
    for row, content in zip(rows, contents, strict=True):
        suffix = "." + row["file"].rsplit(".", 1)[-1].lower() if "." in row["file"] else ""
        content_type = MIME_TYPES.get(suffix, "application/octet-stream")
        binary_url, reference_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        references.append(reference_url)
        document = _document(row, content, binary_url, content_type)
        entries.append(BundleEntry(fullUrl=reference_url, resource=document, request=_request("DocumentReference")))
        binary = Binary(contentType=content_type, data=base64.b64encode(content).decode())
        entries.append(BundleEntry(fullUrl=binary_url, resource=binary, request=_request("Binary")))
    submission = FhirList(
        status="current",
        mode="working",
        identifier=[Identifier(use="usual", system="urn:ietf:rfc:3986", value=submission_id or f"urn:uuid:{uuid.uuid4()}")],
        subject=Reference(identifier=Identifier(system=f"urn:oid:{INS_OID_NIR}", value=ins)),
        entry=[ListEntry(item=Reference(reference=url)) for url in references],
    )
    entries.insert(0, BundleEntry(fullUrl=f"urn:uuid:{uuid.uuid4()}", resource=submission, request=_request("List")))
    return Bundle(type="transaction", entry=entries)
