"""ITI-65 Bundles for the tests, built with the FHIR model library (as a sending DPI would), and their documents."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import DocumentReference, DocumentReferenceContent, DocumentReferenceContext
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.list import ListEntry
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from fpdf import FPDF

from pipeline.core.identity import INS_OID_NIR, with_key

NIR = with_key("1850575123456")
OTHER_NIR = with_key("2900175123456")
INS_SYSTEM = f"urn:oid:{INS_OID_NIR}"
LOINC = "http://loinc.org"
RPPS = "10001234567"


def pdf_bytes(text: str = "Compte rendu de consultation") -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text=text)
    return bytes(pdf.output())


def cda_bytes(ins: str, code: str = "11502-2", unique: str = "CR-BIO-1") -> bytes:
    """A CDA R2 whose header gives its own type code and the sharing metadata (confidentiality R, facility SA01,
    practice setting BIOLOGIE, event codes, author)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <id root="1.2.250.1.999.1.1" extension="{unique}"/>
  <code code="{code}" codeSystem="2.16.840.1.113883.6.1"/>
  <title>Compte rendu de biologie</title>
  <confidentialityCode code="R" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><id root="{INS_OID_NIR}" extension="{ins}"/></patientRole></recordTarget>
  <author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="{RPPS}"/>
    <assignedPerson><name><given>Claire</given><family>Biologiste</family></name></assignedPerson>
    <representedOrganization><name>Laboratoire Central</name></representedOrganization>
  </assignedAuthor></author>
  <documentationOf><serviceEvent><code code="GLYC"/><code code="HBA1C"/>
    <performer><assignedEntity><representedOrganization>
      <standardIndustryClassCode code="BIOLOGIE"/>
    </representedOrganization></assignedEntity></performer>
  </serviceEvent></documentationOf>
  <componentOf><encompassingEncounter><location>
    <healthCareFacility><code code="SA29"/></healthCareFacility>
  </location></encompassingEncounter></componentOf>
  <component><structuredBody><component>
    <section><title>Résultats</title><text>Glycémie normale</text></section>
  </component></structuredBody></component>
</ClinicalDocument>
""".encode()


@dataclass
class Doc:
    """One document to provide, with the metadata an MHD Document Source sends."""

    content: bytes
    content_type: str = "application/pdf"
    unique_id: str = field(default_factory=lambda: f"urn:oid:1.2.250.1.999.2.{uuid.uuid4().int % 10**12}")
    type_code: str | None = "11488-4"
    type_system: str = LOINC
    category: str | None = "10"
    title: str = "Compte rendu de consultation"
    service_date: str = "2025-06-01"
    profession: str = "physician"
    rpps: str = RPPS
    confidentiality: str | None = "N"
    facility_type: str | None = "SA01"
    practice_setting: str | None = "ETABLISSEMENT"
    events: tuple[str, ...] = ("CONSULT",)
    language: str | None = "fr-FR"
    ins: str = NIR
    size: int | None = None  # overrides (to test the checks)
    sha1: bytes | None = None
    inline: bool = False
    binary: bool = True


def _concept(system: str, code: str | None) -> CodeableConcept | None:
    return CodeableConcept(coding=[Coding(system=system, code=code)]) if code else None


def document_reference(doc: Doc, binary_url: str) -> DocumentReference:
    contained = [
        Practitioner(id="pr", identifier=[Identifier(system="urn:oid:1.2.250.1.71.4.2.1", value=doc.rpps)],
                     name=[HumanName(family="Martin", given=["Paul"])]),
        Organization(id="org", name="CHU de Test"),
        PractitionerRole(id="role", practitioner=Reference(reference="#pr"), organization=Reference(reference="#org"),
                         code=[CodeableConcept(coding=[Coding(system="urn:dmp:profession", code=doc.profession)])]),
    ]  # fmt: skip
    attachment = Attachment(
        contentType=doc.content_type,
        url=None if doc.inline else binary_url,
        data=base64.b64encode(doc.content).decode() if doc.inline else None,
        size=len(doc.content) if doc.size is None else doc.size,
        hash=base64.b64encode(doc.sha1 or hashlib.sha1(doc.content).digest()).decode(),
        language=doc.language,
        title=doc.title,
    )
    return DocumentReference(
        contained=contained,
        masterIdentifier=Identifier(system="urn:ietf:rfc:3986", value=doc.unique_id),
        status="current",
        type=_concept(doc.type_system, doc.type_code),
        category=[c] if (c := _concept("urn:oid:1.2.250.1.213.1.1.4.1", doc.category)) else None,
        subject=Reference(identifier=Identifier(system=INS_SYSTEM, value=doc.ins)),
        author=[Reference(reference="#role")],
        description=doc.title,
        securityLabel=[c] if (c := _concept("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", doc.confidentiality)) else None,
        content=[DocumentReferenceContent(attachment=attachment)],
        context=DocumentReferenceContext(
            period=Period(start=doc.service_date),
            facilityType=_concept("urn:oid:1.2.250.1.71.4.2.4", doc.facility_type),
            practiceSetting=_concept("urn:oid:1.2.250.1.213.1.1.4.9", doc.practice_setting),
            event=[CodeableConcept(coding=[Coding(code=code)]) for code in doc.events] or None,
        ),
    )


def bundle(docs: list[Doc], submission_id: str | None = None, ins: str = NIR, patient_system: str = INS_SYSTEM) -> Bundle:
    """An ITI-65 transaction: SubmissionSet List, DocumentReferences, Binaries."""
    entries: list[BundleEntry] = []
    refs: list[str] = []
    for doc in docs:
        binary_url, ref_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        refs.append(ref_url)
        entries.append(BundleEntry(fullUrl=ref_url, resource=document_reference(doc, binary_url),
                                   request=BundleEntryRequest(method="POST", url="DocumentReference")))  # fmt: skip
        if doc.binary and not doc.inline:
            binary = Binary(contentType=doc.content_type, data=base64.b64encode(doc.content).decode())
            entries.append(BundleEntry(fullUrl=binary_url, resource=binary, request=BundleEntryRequest(method="POST", url="Binary")))
    submission = FhirList(
        status="current",
        mode="working",
        identifier=[
            Identifier(
                use="usual", system="urn:ietf:rfc:3986", value=submission_id or f"urn:oid:1.2.250.1.999.3.{uuid.uuid4().int % 10**12}"
            )
        ],
        code=CodeableConcept(coding=[Coding(system="https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", code="submissionset")]),
        subject=Reference(identifier=Identifier(system=patient_system, value=ins)),
        entry=[ListEntry(item=Reference(reference=ref)) for ref in refs],
    )
    entries.insert(
        0, BundleEntry(fullUrl=f"urn:uuid:{uuid.uuid4()}", resource=submission, request=BundleEntryRequest(method="POST", url="List"))
    )
    return Bundle(type="transaction", entry=entries)


def body(value: Bundle | dict[str, Any]) -> bytes:
    return value.model_dump_json(exclude_none=True).encode() if isinstance(value, Bundle) else json.dumps(value).encode()
