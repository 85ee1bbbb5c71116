"""The FHIR R4 resources the server emits, built with the model library (fhir.resources, R4B models).

Nothing here reads the index or decides anything: the callers pass what the policy let them show.
A search page's DocumentReferences (and their parts) are built with `model_construct` (`built`): from values
the index already holds valid, without validating each element again (most of a page's time otherwise); the
tests validate every resource the server emits with the library (tests/sharing/test_resources.py and the
HTTP tests parse every answer).
`base` is the server's FHIR base URL as the client reached it (e.g. `https://dmp.example/fhir`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryResponse, BundleEntrySearch, BundleLink
from fhir.resources.R4B.capabilitystatement import (
    CapabilityStatement,
    CapabilityStatementRest,
    CapabilityStatementRestInteraction,
    CapabilityStatementRestResource,
    CapabilityStatementRestResourceInteraction,
    CapabilityStatementRestResourceSearchParam,
    CapabilityStatementSoftware,
)
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import (
    DocumentReference,
    DocumentReferenceContent,
    DocumentReferenceContext,
    DocumentReferenceRelatesTo,
)
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.list import ListEntry
from fhir.resources.R4B.meta import Meta
from fhir.resources.R4B.operationoutcome import OperationOutcome, OperationOutcomeIssue
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel

from pipeline import __version__
from pipeline.core.identity import INS_OID_NIR
from pipeline.index.models import DocumentSharing
from pipeline.sharing.metadata import status_of
from pipeline.sharing.valuesets import Code, ValueSetName, lookup, type_system

if TYPE_CHECKING:
    from pipeline.access.recordview import PolicyRow  # a Document, or a row of its columns (the listing's page)

FHIR_VERSION = "4.0.1"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
MHD_PROFILE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.DocumentReference"
# The search parameters supported, per resource type (CapabilityStatement, and what the search module reads).
DOCUMENT_SEARCH = {
    "patient.identifier": "token", "status": "token", "category": "token", "type": "token", "date": "date",
    "period": "date", "author.identifier": "token", "author.family": "string", "author.given": "string",
    "facility": "token", "setting": "token", "event": "token", "security-label": "token", "format": "token",
    "_count": "number", "_offset": "number",
}  # fmt: skip
LIST_SEARCH = {"patient.identifier": "token", "code": "token", "status": "token", "date": "date", "_count": "number", "_offset": "number"}
AUDIT_SEARCH = {"patient.identifier": "token", "_count": "number", "_offset": "number"}
SEVERITY = {400: "error", 401: "error", 403: "error", 404: "error", 409: "error", 413: "error", 415: "error", 422: "error",
            429: "error", 500: "fatal", 503: "error"}  # fmt: skip
ISSUE_TYPE = {400: "structure", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 409: "conflict",
              413: "too-costly", 415: "not-supported", 422: "processing", 429: "throttled", 500: "exception", 503: "transient"}  # fmt: skip
REASON_SYSTEM = "https://dmp.example/fhir/CodeSystem/reason"
E = TypeVar("E", bound=BaseModel)


@cache
def _blank(cls: type[Any]) -> dict[str, Any]:
    """Every field of a FHIR model unset (FHIR elements have no defaults: each is absent until given)."""
    return dict.fromkeys(cls.model_fields)


def built(cls: type[E], **values: Any) -> E:
    """A model element from values already valid (the index's, the value sets'), not validated again: what
    pydantic's `model_construct` makes, at a fraction of its cost (it resolves every field's alias and default
    on each call, a third of a search page's time)."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", {**_blank(cls), **values})
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def coding(code: Code) -> Coding:
    return built(Coding, system=code.system, code=code.code, display=code.display)


@cache
def concept(name: ValueSetName, code: str | None) -> CodeableConcept | None:
    """A CodeableConcept from a value set's table; None when `code` is absent or unknown. Shared between
    resources (never changed after it is built)."""
    entry = lookup(name, code)
    return built(CodeableConcept, coding=[coding(entry)]) if entry is not None else None


def patient_reference(ins: str) -> Reference:
    """The patient as MHD names it across systems: a logical reference by INS, with its OID."""
    return built(Reference, identifier=built(Identifier, system=f"urn:oid:{INS_OID_NIR}", value=ins), type="Patient")


def outcome(status: int, code: str, detail: str, incident: str | None = None) -> OperationOutcome:
    """An error as an OperationOutcome: the product's stable reason code as the issue's details; an unexpected
    failure's incident (to quote to the operator) as its diagnostics."""
    details = CodeableConcept(coding=[Coding(system=REASON_SYSTEM, code=code)], text=detail)
    issue = OperationOutcomeIssue(
        severity=SEVERITY.get(status, "error"), code=ISSUE_TYPE.get(status, "processing"), details=details, diagnostics=incident
    )
    return OperationOutcome(issue=[issue])


def _author(document: PolicyRow, sharing: DocumentSharing | None) -> tuple[list[Resource], list[Reference]]:
    """The contained author: a PractitionerRole (profession; facility by name) whose practitioner is a logical
    reference (RPPS, name). One contained resource rather than three: the model library serializes every
    element of every resource in Python, and a page of documents pays it per document."""
    if not document.author_id:
        return [], []
    name = " ".join(filter(None, (sharing.author_given, sharing.author_family))) if sharing is not None else ""
    rpps = built(Identifier, system=RPPS_SYSTEM, value=document.author_id)
    practitioner = built(Reference, type="Practitioner", identifier=rpps, display=name or None)
    facility = sharing.author_facility if sharing is not None else None
    profession = concept(ValueSetName.PROFESSIONS, document.author_profession)
    role = built(
        PractitionerRole,
        id="author",
        practitioner=practitioner,
        code=[profession] if profession else None,
        organization=built(Reference, type="Organization", display=facility) if facility else None,
    )
    return [role], [built(Reference, reference="#author")]


def binary_url(base: str, document_id: str) -> str:
    """Where ITI-68 retrieves a document's bytes."""
    return f"{base}/Binary/{document_id}"


def document_reference(base: str, document: PolicyRow, sharing: DocumentSharing | None, ins: str, title: str | None) -> DocumentReference:
    """The DocumentReference of an indexed document (ITI-67's answer, MHD Minimal/Comprehensive metadata)."""
    contained, authors = _author(document, sharing)
    type_code = Code(document.type_code, type_system(document.type_code), document.type_code)
    event_codes = ((sharing.event_codes if sharing else None) or "").split()
    events = [built(CodeableConcept, coding=[built(Coding, code=code)]) for code in event_codes]
    context = built(
        DocumentReferenceContext,
        period=built(Period, start=document.service_date.isoformat()) if document.service_date else None,
        facilityType=concept(ValueSetName.FACILITY_TYPES, sharing.facility_type) if sharing else None,
        practiceSetting=concept(ValueSetName.PRACTICE_SETTINGS, sharing.practice_setting) if sharing else None,
        event=events or None,
    )
    format_code = lookup(ValueSetName.FORMATS, sharing.format_code if sharing else None) or lookup(
        ValueSetName.FORMATS, "urn:ihe:iti:xds:2017:mimeTypeSufficient"
    )
    attachment = built(
        Attachment,
        contentType=document.mime_type,
        url=binary_url(base, document.id),
        size=document.size,
        title=title or None,
        language=sharing.language if sharing and sharing.language else None,
        creation=document.created_at,
    )
    unique_id = (sharing.unique_id if sharing else None) or document.source_document_id
    confidentiality = concept(ValueSetName.CONFIDENTIALITY, (sharing.confidentiality if sharing else None) or "N")
    replaced = built(Reference, reference=f"DocumentReference/{document.supersedes_id}") if document.supersedes_id else None
    return built(
        DocumentReference,
        id=document.id,
        meta=_MHD_META,
        contained=contained or None,
        masterIdentifier=built(Identifier, system="urn:ietf:rfc:3986", value=_urn(unique_id)),
        identifier=[built(Identifier, use="official", system="urn:ietf:rfc:3986", value=f"urn:uuid:{document.id}")],
        status=status_of(document),
        # The version it replaced (R4 has no document version element: the versions are the chain of relatesTo).
        relatesTo=[built(DocumentReferenceRelatesTo, code="replaces", target=replaced)] if replaced else None,
        type=built(CodeableConcept, coding=[coding(type_code)]),
        category=[c] if (c := concept(ValueSetName.CLASSES, document.class_code)) else None,
        subject=patient_reference(ins),
        date=document.created_at,
        author=authors or None,
        description=title or None,
        securityLabel=[confidentiality] if confidentiality else None,
        content=[built(DocumentReferenceContent, attachment=attachment, format=coding(format_code) if format_code else None)],
        context=context,
    )


_MHD_META = Meta(profile=[MHD_PROFILE])


def _urn(value: str) -> str:
    """An identifier as the URI MHD wants: OIDs as `urn:oid:`, anything else kept when it is a URI already."""
    if value.startswith(("urn:", "http://", "https://")):
        return value
    root, _, extension = value.partition("^")
    if root.replace(".", "").isdigit():
        return f"urn:oid:{root}" + (f"^{extension}" if extension else "")
    return f"urn:dmp:{value}"


def submission_list(list_id: str, unique_id: str, created: dt.datetime, ins: str, source: str, document_ids: Sequence[str]) -> FhirList:
    """A SubmissionSet as a List (ITI-66), with the entries the caller may see."""
    return FhirList(
        id=list_id,
        identifier=[
            Identifier(use="usual", system="urn:ietf:rfc:3986", value=_urn(unique_id)),
            Identifier(use="official", system="urn:ietf:rfc:3986", value=f"urn:uuid:{list_id}"),
        ],
        status="current",
        mode="working",
        code=CodeableConcept(coding=[Coding(system="https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", code="submissionset")]),
        subject=patient_reference(ins),
        date=created.isoformat(),
        source=Reference(display=source),
        entry=[ListEntry(item=Reference(reference=f"DocumentReference/{document_id}")) for document_id in document_ids] or None,
    )


def searchset(base: str, resources: Sequence[Resource], total: int | None, self_url: str, next_url: str | None) -> Bundle:
    """A search's answer: `total` counts only what the caller may see (None: not counted)."""
    links = [built(BundleLink, relation="self", url=self_url)] + ([built(BundleLink, relation="next", url=next_url)] if next_url else [])
    match = built(BundleEntrySearch, mode="match")
    entries = [
        built(BundleEntry, fullUrl=f"{base}/{resource.get_resource_type()}/{resource.id}", resource=resource, search=match)
        for resource in resources
    ]
    return built(Bundle, type="searchset", total=total, link=links, entry=entries or None)


def transaction_response(entries: Sequence[tuple[str, str | None]]) -> Bundle:
    """The answer to an ITI-65 transaction: per request entry (status line, location)."""
    answers = [built(BundleEntry, response=built(BundleEntryResponse, status=status, location=location)) for status, location in entries]
    return built(Bundle, type="transaction-response", entry=answers)  # our own values: not validated again, as a search page


def capability_statement(base: str) -> CapabilityStatement:
    """What this server supports, exactly: MHD Document Recipient (ITI-65) and Responder (ITI-66, 67, 68), AuditEvent search."""

    def params(names: dict[str, str]) -> list[CapabilityStatementRestResourceSearchParam]:
        return [CapabilityStatementRestResourceSearchParam(name=name, type=kind) for name, kind in names.items()]

    def resource(kind: str, interactions: list[str], search: dict[str, str] | None = None) -> CapabilityStatementRestResource:
        return CapabilityStatementRestResource(
            type=kind,
            interaction=[CapabilityStatementRestResourceInteraction(code=code) for code in interactions],
            searchParam=params(search) if search else None,
        )

    rest = CapabilityStatementRest(
        mode="server",
        documentation="IHE MHD: ITI-65 as a transaction Bundle POSTed to the base (relatesTo replaces: a new version of the "
        "source's own document; status entered-in-error withdraws and superseded deprecates the source's own document its "
        "masterIdentifier names); bearer tokens (sources: API keys) as /v1. DocumentReference status "
        "search: current (default), superseded; entered-in-error documents are shown nowhere.",
        interaction=[CapabilityStatementRestInteraction(code="transaction")],
        resource=[
            resource("DocumentReference", ["read", "search-type"], DOCUMENT_SEARCH),
            resource("List", ["read", "search-type"], LIST_SEARCH),
            resource("Binary", ["read"]),
            resource("AuditEvent", ["search-type"], AUDIT_SEARCH),
        ],
    )
    return CapabilityStatement(
        status="active",
        date=dt.date.today().isoformat(),
        kind="instance",
        software=CapabilityStatementSoftware(name="DMP", version=__version__),
        implementation={"description": "DMP FHIR R4 / IHE MHD", "url": base},
        fhirVersion=FHIR_VERSION,
        format=["application/fhir+json", "application/fhir+xml"],
        instantiates=[
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient",
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder",
        ],
        rest=[rest],
    )
