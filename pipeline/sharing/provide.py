"""Reading an ITI-65 Provide Document Bundle (IHE MHD) into the manifest rows and bytes of a batch.

Pure: no storage, no index. The whole Bundle is checked before anything is recorded (an MHD transaction is
all or nothing): a refusal raises `SubmissionRefused` with a stable reason code (pipeline/core/reasons.py).
The patient is matched by INS only, given with its OID (`urn:oid:1.2.250.1.213.1.4.8|NIR`, as a logical
reference or a conditional `Patient?identifier=` reference); size and SHA-1 hash of each attachment are
checked against its bytes; every code against its value set.

A DocumentReference with `relatesTo` `replaces` (its target `DocumentReference/<id>` or the target's unique id
as an identifier) is a new version of the target: its row says `version_action` = `replace` and names the
target in `ProvidedDocument.replaces`; the intake (pipeline/ingest/mhd.py) puts it under the target's
`source_document_id`, as a manifest row would be (pipeline/documents/versions.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError

from pipeline.core.identity import INS_OIDS, is_valid_nir, normalize_nir
from pipeline.core.reasons import REASONS
from pipeline.sharing.metadata import problem_of
from pipeline.sharing.validation import Elements
from pipeline.sharing.valuesets import ValueSetName, find, is_type_coding, lookup

# More DocumentReferences than this in one Bundle is refused (`bundle_too_large`); bytes are bounded by the route.
MAX_DOCUMENTS = 200
EXTENSIONS = {"application/pdf": ".pdf", "application/xml": ".xml", "text/xml": ".xml", "application/hl7-v3+xml": ".xml",
              "image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tif", "text/plain": ".txt"}  # fmt: skip
USUAL = "usual"  # the identifier use MHD gives a SubmissionSet's and a DocumentReference's unique id
# The resources an ITI-65 Bundle holds, each validated by its own model.
ENTRY_MODELS: dict[str, type[Any]] = {"List": FhirList, "DocumentReference": DocumentReference, "Binary": Binary}
# The resources a DocumentReference contains (its author), each validated by its own model before the DocumentReference:
# given as a dict, the library finds a contained resource's model by importing it by name (importlib, per resource:
# about a sixth of a DocumentReference's validation); given as a model, it takes it as it is. Any other contained
# resource is left to the library.
CONTAINED_MODELS: dict[str, type[Any]] = {"Practitioner": Practitioner, "PractitionerRole": PractitionerRole, "Organization": Organization}


class SubmissionRefused(Exception):
    """The Bundle as a whole is refused: `code` is a stable reason code, the message safe to show."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{REASONS[code]} {detail}".strip())
        self.code = code


@dataclass(frozen=True)
class Replaced:
    """The document a DocumentReference replaces, as named in its relatesTo: by server id or by unique id."""

    document_id: str | None = None
    unique_id: str | None = None


@dataclass(frozen=True)
class ProvidedDocument:
    """One DocumentReference: its manifest row (README's columns), its bytes and where it sat in the Bundle."""

    row: dict[str, str]
    content: bytes
    entry: int  # index of the DocumentReference's entry
    binary_entry: int | None  # index of its Binary's entry, when it came as one
    replaces: Replaced | None = None  # the document it is a new version of (relatesTo replaces)


@dataclass(frozen=True)
class StatusChange:
    """A DocumentReference that changes the status of the source's existing document (no bytes): named by its
    masterIdentifier (the document's unique id); `action` is `withdraw` (entered-in-error) or `deprecate`
    (superseded, no successor)."""

    unique_id: str
    action: str
    entry: int


@dataclass(frozen=True)
class Submission:
    unique_id: str  # the SubmissionSet's unique id: a replay of it is the same submission
    list_entry: int
    documents: list[ProvidedDocument] = field(default_factory=list)
    entries: int = 0
    changes: list[StatusChange] = field(default_factory=list)


def _ins(reference: Reference | None) -> str:
    """The INS a patient reference names, with an INS OID: a logical reference or `Patient?identifier=system|value`."""
    if reference is None:
        raise SubmissionRefused("patient_identifier_invalid", "A subject is missing.")
    system, value = None, None
    if reference.identifier is not None:
        system, value = reference.identifier.system, reference.identifier.value
    elif reference.reference and reference.reference.startswith("Patient?identifier="):
        system, _, value = reference.reference.removeprefix("Patient?identifier=").partition("|")
    oid = (system or "").removeprefix("urn:oid:")
    if not system or not system.startswith("urn:oid:") or oid not in INS_OIDS or not value:
        raise SubmissionRefused("patient_identifier_invalid")
    ins = normalize_nir(value)
    if not is_valid_nir(ins):
        raise SubmissionRefused("invalid_ins", "In a subject of the Bundle.")
    return ins


def _usual_identifier(identifiers: list[Any] | None) -> str | None:
    chosen = next((i for i in identifiers or [] if i.use == USUAL), None) or next(iter(identifiers or []), None)
    return chosen.value if chosen is not None and chosen.value else None


def _type_code(document: DocumentReference) -> str:
    """The declared type code ('' when none): it must be in document_types.csv, in its own code system."""
    if document.type is None or not document.type.coding:
        return ""
    for coding in document.type.coding:
        if is_type_coding(coding.system, coding.code):
            return str(coding.code)
    raise SubmissionRefused("unknown_code", "DocumentReference.type.")


def _check_category(document: DocumentReference) -> None:
    for concept in document.category or []:
        for coding in concept.coding or []:
            if find(ValueSetName.CLASSES, coding.system, coding.code) is None:
                raise SubmissionRefused("unknown_code", "DocumentReference.category.")


def _first_code(concept: Any) -> str:
    coding = next(iter(concept.coding or []), None) if concept is not None else None
    return (coding.code or "") if coding is not None else ""


def _local(reference: Reference | None) -> str:
    """The id a reference to a contained resource names (`#id`)."""
    return ((reference.reference if reference is not None else None) or "").removeprefix("#")


def _role(role: PractitionerRole, contained: dict[str, Any], fields: dict[str, str]) -> Any:
    """The profession and facility a PractitionerRole gives; its Practitioner (or None)."""
    profession = _first_code(next(iter(role.code or []), None))
    if profession and lookup(ValueSetName.PROFESSIONS, profession) is None:
        raise SubmissionRefused("unknown_code", "The author's profession (PractitionerRole.code).")
    fields.setdefault("author_profession", profession)
    organization = contained.get(_local(role.organization))
    if isinstance(organization, Organization) and organization.name:
        fields.setdefault("author_facility", organization.name)
    return contained.get(_local(role.practitioner))


def _author(document: DocumentReference) -> dict[str, str]:
    """author_id (RPPS), author_profession, names and facility from the contained Practitioner / PractitionerRole."""
    contained: dict[str, Any] = {resource.id: resource for resource in document.contained or [] if resource.id}
    fields: dict[str, str] = {}
    for reference in document.author or []:
        resource = contained.get(_local(reference))
        if isinstance(resource, PractitionerRole):
            resource = _role(resource, contained, fields)
        if isinstance(resource, Practitioner):
            identifier = _usual_identifier(resource.identifier)
            if identifier:
                fields.setdefault("author_id", identifier)
            name = next(iter(resource.name or []), None)
            if name is not None:
                fields.setdefault("author_family", name.family or "")
                fields.setdefault("author_given", " ".join(filter(None, name.given or [])))
    if not fields.get("author_id") or not fields.get("author_profession"):
        raise SubmissionRefused("bundle_invalid", "Each DocumentReference needs a contained PractitionerRole and Practitioner (RPPS).")
    return fields


def _service_date(document: DocumentReference) -> str:
    period = document.context.period if document.context is not None else None
    moment = (period.start if period is not None else None) or document.date
    if moment is None:
        raise SubmissionRefused("bundle_invalid", "A DocumentReference has neither context.period.start nor date.")
    return moment.isoformat()[:10]


def _content(document: DocumentReference, binaries: dict[str, tuple[int, bytes, str | None]]) -> tuple[bytes, int | None, str]:
    """The attachment's bytes (its Binary's, or inline), its Binary's entry, its content type; size and hash checked."""
    attachment = document.content[0].attachment
    binary = binaries.get(str(attachment.url or ""))
    if binary is not None:
        entry, data, binary_type = binary
    elif attachment.data is not None:
        entry, data, binary_type = None, attachment.data, None
    else:
        raise SubmissionRefused("binary_missing", f"Attachment {attachment.url or '(no url)'}.")
    if attachment.size is not None and attachment.size != len(data):
        raise SubmissionRefused("size_mismatch")
    if attachment.hash is not None and attachment.hash != hashlib.sha1(data, usedforsecurity=False).digest():
        raise SubmissionRefused("hash_mismatch")
    return data, entry, attachment.contentType or binary_type or "application/octet-stream"


def replaced_of(document: DocumentReference) -> Replaced | None:
    """The document a provided DocumentReference replaces (None: a new document). A document is provided
    `current`; one relation at most, `replaces`: the other relations (appends, transforms, signs) and status
    other than those `status_change` reads are refused `replacement_not_supported`."""
    if document.status != "current":
        raise SubmissionRefused("replacement_not_supported", "A new document is provided with status current.")
    relations = document.relatesTo or []
    if not relations:
        return None
    if len(relations) != 1 or relations[0].code != "replaces":
        raise SubmissionRefused("replacement_not_supported", "One relatesTo at most, of code replaces.")
    target = relations[0].target
    kind, _, server_id = (target.reference or "").partition("/")
    if kind == "DocumentReference" and server_id:
        return Replaced(document_id=server_id)
    if target.identifier is not None and target.identifier.value:
        return Replaced(unique_id=target.identifier.value)
    raise SubmissionRefused("bundle_invalid", "relatesTo.target names a DocumentReference: DocumentReference/<id> or its identifier.")


STATUS_ACTIONS = {"entered-in-error": "withdraw", "superseded": "deprecate"}


def status_change(index: int, document: DocumentReference, ins: str) -> StatusChange | None:
    """The status change a DocumentReference asks for (None: it provides a document). `entered-in-error`
    withdraws and `superseded` with no relatesTo deprecates the source's document its masterIdentifier names;
    any other status, or a superseded one naming a successor, is refused `replacement_not_supported`."""
    if document.status == "current":
        return None
    action = STATUS_ACTIONS.get(str(document.status))
    if action is None or document.relatesTo:
        raise SubmissionRefused("replacement_not_supported", "A status change is entered-in-error or superseded, with no relatesTo.")
    unique_id = document.masterIdentifier.value if document.masterIdentifier is not None else None
    if not unique_id:
        raise SubmissionRefused("bundle_invalid", "A status change names its document by masterIdentifier (its unique id).")
    if _ins(document.subject) != ins:
        raise SubmissionRefused("bundle_invalid", "Every DocumentReference must be about the SubmissionSet's patient.")
    return StatusChange(unique_id, action, index)


def _row(number: int, document: DocumentReference, ins: str, content_type: str, replaces: Replaced | None) -> dict[str, str]:
    unique_id = document.masterIdentifier.value if document.masterIdentifier is not None else None
    if not unique_id:
        raise SubmissionRefused("bundle_invalid", "A DocumentReference has no masterIdentifier (its unique id).")
    if _ins(document.subject) != ins:
        raise SubmissionRefused("bundle_invalid", "Every DocumentReference must be about the SubmissionSet's patient.")
    _check_category(document)
    context, content = document.context, document.content[0]
    row = {
        "file": f"document-{number:04d}{EXTENSIONS.get(content_type.split(';')[0].strip().lower(), '.bin')}",
        "patient_ins": ins,
        "source_document_id": unique_id,  # a replacement's: its target's, set by the intake
        "unique_id": unique_id,
        "version_action": "replace" if replaces is not None else "",
        "title": document.description or content.attachment.title or "",
        "document_type": _type_code(document),
        "service_date": _service_date(document),
        "confidentiality": _first_code(next(iter(document.securityLabel or []), None)),
        "practice_setting": _first_code(context.practiceSetting) if context is not None else "",
        "facility_type": _first_code(context.facilityType) if context is not None else "",
        "format_code": (content.format.code or "") if content.format is not None else "",
        "language": content.attachment.language or "",
        "event_codes": " ".join(filter(None, (_first_code(event) for event in (context.event or [])))) if context is not None else "",
        **_author(document),
    }
    problem = problem_of(row)
    if problem is not None:
        raise SubmissionRefused(problem[0], problem[1])
    return row


def _resource(elements: Elements, index: int, value: Any) -> Any:
    """An entry's resource, validated by its own model (List, DocumentReference, Binary); anything else is refused."""
    kind = value.get("resourceType") if isinstance(value, dict) else None
    model = ENTRY_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise SubmissionRefused("bundle_invalid", f"Unexpected entry {index} ({kind}).")
    return elements.resource(model, value)


def _bundle(data: bytes) -> tuple[Bundle, list[Any]]:
    """The Bundle and its entries' resources, every one validated by the model library. Each resource is
    validated by its own model rather than through the Bundle's union of every resource type, which costs
    half again as much per entry."""
    try:
        raw = json.loads(data)
        entries = raw.get("entry") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("not a Bundle with entries")
        elements = Elements(CONTAINED_MODELS)  # each distinct element validated once (pipeline/sharing/validation.py)
        bundle = elements.resource(Bundle, {**raw, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries] or None})
        resources = [_resource(elements, index, entry.get("resource")) for index, entry in enumerate(entries)]
    # RecursionError: JSON nested past the parser's depth; TypeError: the library's own failure on some shapes
    # (a contained resource whose resourceType is not a string).
    except (ValidationError, ValueError, TypeError, RecursionError) as failure:
        raise SubmissionRefused("bundle_invalid", f"Not a FHIR R4 Bundle ({type(failure).__name__}).") from None
    return bundle, resources


def read_submission(data: bytes) -> Submission:
    """The submission an ITI-65 Bundle (JSON) makes, every check passed; SubmissionRefused otherwise."""
    bundle, resources = _bundle(data)
    if bundle.type != "transaction" or not bundle.entry:
        raise SubmissionRefused("bundle_invalid", "Send a transaction Bundle.")
    lists: list[tuple[int, FhirList]] = []
    references: list[tuple[int, DocumentReference]] = []
    binaries: dict[str, tuple[int, bytes, str | None]] = {}
    for index, (entry, resource) in enumerate(zip(bundle.entry, resources, strict=True)):
        if isinstance(resource, FhirList):
            lists.append((index, resource))
        elif isinstance(resource, DocumentReference):
            references.append((index, resource))
        elif isinstance(resource, Binary) and entry.fullUrl and resource.data is not None:
            binaries[str(entry.fullUrl)] = (index, resource.data, resource.contentType)
    if len(lists) != 1 or not references:
        raise SubmissionRefused("bundle_invalid", "Send one SubmissionSet List and at least one DocumentReference.")
    if len(references) > MAX_DOCUMENTS:
        raise SubmissionRefused("bundle_too_large", f"At most {MAX_DOCUMENTS} documents per Bundle.")
    list_entry, submission_set = lists[0]
    unique_id = _usual_identifier(submission_set.identifier)
    if not unique_id:
        raise SubmissionRefused("bundle_invalid", "The SubmissionSet has no identifier (its unique id).")
    ins = _ins(submission_set.subject)
    documents: list[ProvidedDocument] = []
    changes: list[StatusChange] = []
    for index, document in references:
        change = status_change(index, document, ins)
        if change is not None:
            changes.append(change)
            continue
        number = len(documents) + 1
        if not document.content:
            raise SubmissionRefused("binary_missing", "A DocumentReference has no content.")
        content, binary_entry, content_type = _content(document, binaries)
        replaces = replaced_of(document)
        documents.append(ProvidedDocument(_row(number, document, ins, content_type, replaces), content, index, binary_entry, replaces))
    return Submission(unique_id, list_entry, documents, len(bundle.entry), changes)
