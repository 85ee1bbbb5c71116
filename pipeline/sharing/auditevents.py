"""The access log as FHIR AuditEvents in the IHE BALP shape (Basic Audit Log Patterns).

One AuditEvent per access-log line the reader may read (pipeline/access/accesslog.py decides which): the
RESTful interaction it stands for, the actor as the requesting agent, the patient (and the document) as
entities. A break-glass access carries the purpose of use `BTG` (break the glass), on the event and on its
agent, and its justification when the reader may read it.
"""

from __future__ import annotations

from fhir.resources.R4B.auditevent import AuditEvent, AuditEventAgent, AuditEventEntity, AuditEventSource
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.reference import Reference

from pipeline.access.accesslog import LogLine
from pipeline.core.identity import INS_OID_NIR
from pipeline.index.states import AuditOutcome

BALP_PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
REST = Coding(system="http://terminology.hl7.org/CodeSystem/audit-event-type", code="rest", display="RESTful Operation")
DEPOSIT = Coding(system="http://dicom.nema.org/resources/ontology/DCM", code="110106", display="Export")  # a source sending in
INTERACTION = "http://hl7.org/fhir/restful-interaction"
# The product's actions as BALP's RESTful interaction and its CRUDE action code.
ACTIONS = {
    "list": ("search-type", "E"), "read_metadata": ("read", "R"), "read_content": ("read", "R"),
    "emergency_read": ("read", "R"), "read_care_history": ("read", "R"), "read_access_log": ("search-type", "E"),
    "export": ("read", "R"), "deposit": ("create", "C"),
}  # fmt: skip
BREAK_GLASS = Coding(system="http://terminology.hl7.org/CodeSystem/v3-ActReason", code="BTG", display="break the glass")
PATIENT_ROLE = Coding(system="http://terminology.hl7.org/CodeSystem/object-role", code="1", display="Patient")
DOCUMENT_ROLE = Coding(system="http://terminology.hl7.org/CodeSystem/object-role", code="3", display="Report")
SERVER = Coding(system="http://terminology.hl7.org/CodeSystem/security-source-type", code="4", display="Application Server")
REASON_SYSTEM = "https://dmp.example/fhir/CodeSystem/reason"
ACTOR_SYSTEM = "https://dmp.example/fhir/actor-kind"


def audit_event(line: LogLine, ins: str) -> AuditEvent:
    """One access-log line as a BALP AuditEvent; `ins` is the record's patient."""
    entry = line.entry
    interaction, action = ACTIONS.get(entry.action, ("read", "R") if entry.action.startswith("read") else ("update", "U"))
    allowed = entry.outcome == AuditOutcome.ALLOWED
    purpose = [CodeableConcept(coding=[BREAK_GLASS], text=line.justification)] if entry.emergency else None
    agent = AuditEventAgent(
        type=CodeableConcept(coding=[Coding(system=ACTOR_SYSTEM, code=entry.actor_kind)]),
        role=[CodeableConcept(coding=[Coding(system="urn:dmp:profession", code=entry.profession)])] if entry.profession else None,
        who=Reference(identifier=Identifier(system=f"{ACTOR_SYSTEM}/{entry.actor_kind}", value=entry.actor_id)),
        requestor=True,
        purposeOfUse=purpose,
    )
    entities = [
        AuditEventEntity(
            what=Reference(identifier=Identifier(system=f"urn:oid:{INS_OID_NIR}", value=ins), type="Patient"),
            role=PATIENT_ROLE,
        )
    ]
    if entry.document_id:
        entities.append(AuditEventEntity(what=Reference(reference=f"DocumentReference/{entry.document_id}"), role=DOCUMENT_ROLE))
    return AuditEvent(
        id=str(entry.id),
        meta={"profile": [BALP_PROFILE]},
        type=DEPOSIT if entry.action == "deposit" else REST,
        subtype=[Coding(system=INTERACTION, code=interaction), Coding(system="urn:dmp:action", code=entry.action)],
        action=action,
        recorded=entry.at.isoformat(),
        outcome="0" if allowed else "4",
        outcomeDesc=line.reason,
        purposeOfEvent=purpose,
        agent=[agent],
        source=AuditEventSource(observer=Reference(display="DMP"), type=[SERVER]),
        entity=entities,
    )
