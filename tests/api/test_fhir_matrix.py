"""Consent through FHIR: ITI-67 search and ITI-68 retrieve against the same independent expectations as the
HTTP matrix (tests/api/matrix_expectation.py, written from docs/domain.md): masked, blocked, forbidden
parties, break-glass, every record state; and no existence oracle.

The world is the HTTP matrix's (tests/api/test_matrix_http.py): one patient per record state, the same documents
for each. A search names the record by INS; a document is in the answer exactly when the expectation lets the
actor read its metadata, and `total` counts those only. A record-level denial the actor may be told is a 403
OperationOutcome with the reason; one the actor may not learn of is the empty searchset an unknown INS gets.
ITI-68 answers every refusal with the one 404 (the document id alone must not tell whether it exists).
"""

from __future__ import annotations

import uuid

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy import select

from pipeline.core.identity import INS_OID_NIR, with_key
from pipeline.index.models import Patient
from tests.api.matrix_expectation import ACTORS, DOCS, STATES, ActorCase, DocCase, RecordState, expected, record_denial, refused
from tests.api.test_matrix_http import EMERGENCY, GROUPS, OTHER_ATTENDING, Verdicts, World, _group, _new_audit_entries, _row_id
from tests.api.test_matrix_http import world as world  # the same world, built for this module

pytestmark = pytest.mark.slow  # thousands of HTTP requests

UNKNOWN_INS = with_key("1990199999999")
AUTHORED = DocCase("11", "60591-5", False)  # as test_matrix_http.py writes them


def _ins(world: World, patient_id: str) -> str:
    with world.rt.sessions() as session:
        return session.scalars(select(Patient.ins).where(Patient.id == patient_id)).one()


def _search(world: World, headers: dict[str, str], ins: str, emergency: bool):
    params = {"patient.identifier": f"urn:oid:{INS_OID_NIR}|{ins}", "_count": "200"}
    return world.client.get("/fhir/DocumentReference", params=params, headers={**headers, **EMERGENCY} if emergency else headers)


def _without_links(content: bytes) -> bytes:
    """A searchset without its links (they echo the request, INS included): what it tells of the record."""
    found = Bundle.model_validate_json(content)
    found.link = None
    return found.model_dump_json(exclude_none=True).encode()


def _check_search(world: World, verdicts: Verdicts, actor: ActorCase, state: RecordState, emergency: bool, empty: bytes) -> None:
    pid = world.patients[state.name]
    world.set_attending(pid, actor.subject(pid) if actor.attending else OTHER_ATTENDING)
    headers = world.headers(actor, pid)
    answer = _search(world, headers, _ins(world, pid), emergency)
    entries = _new_audit_entries(world, pid)
    row = _row_id(actor, state, emergency)
    verdicts.rows += 1
    denial = record_denial(actor, state, emergency)
    if denial is not None:
        want = refused(actor, denial)
        if want.status == 404:
            if (answer.status_code, _without_links(answer.content)) != (200, empty):
                verdicts.mismatches.append(f"{row}: got {answer.status_code} {answer.text}, expected the unknown record's answer")
        else:
            got = (answer.status_code, OperationOutcome.model_validate_json(answer.content).issue[0].details.coding[0].code)
            if got != (want.status, want.code):
                verdicts.mismatches.append(f"{row}: got {got}, expected {(want.status, want.code)}")
    else:
        found = Bundle.model_validate_json(answer.content)
        shown = {entry.resource.id for entry in found.entry or []}
        allowed = {world.documents[(state.name, doc.name)] for doc in DOCS if expected(actor, state, doc, emergency).allowed}
        # The world's "author" actors each wrote one more document of the record (a summary, not masked).
        authored = [name for (state_name, name) in world.documents if state_name == state.name and name.startswith("authored-")]
        if expected(actor, state, AUTHORED, emergency).allowed:
            allowed |= {world.documents[(state.name, name)] for name in authored}
        if shown != allowed or found.total != len(allowed):
            verdicts.mismatches.append(f"{row}: shown {len(shown)} (total {found.total}), expected {len(allowed)}; extra {shown - allowed}")
    action = "emergency_read" if emergency else "list"
    got_entries = [(e.actor_id, e.action) for e in entries if e.document_id is None]
    if got_entries != [(actor.subject(pid), action)]:
        verdicts.mismatches.append(f"{row}: audit entries {got_entries}, expected one {action}")


@pytest.mark.parametrize("group", GROUPS)
def test_document_reference_search_shows_what_the_domain_rules_let_each_actor_see(world, group):
    verdicts = Verdicts()
    for actor in (actor for actor in ACTORS if _group(actor) == group):
        unknown = _without_links(_search(world, world.headers(actor, str(uuid.uuid4())), UNKNOWN_INS, False).content)
        for state in STATES:
            for emergency in (False, True):
                _check_search(world, verdicts, actor, state, emergency, unknown)
    verdicts.conclude()


@pytest.mark.parametrize("group", GROUPS)
def test_retrieve_and_read_refuse_with_the_one_404_and_audit_the_real_decision(world, group):
    """ITI-68 (Binary) and the DocumentReference read: the same expectations, the unknown id's 404 for any refusal."""
    verdicts = Verdicts()
    for actor in (actor for actor in ACTORS if _group(actor) == group):
        for state in STATES:
            pid = world.patients[state.name]
            for emergency in (False, True):
                world.set_attending(pid, actor.subject(pid) if actor.attending else OTHER_ATTENDING)
                headers = world.headers(actor, pid)
                headers = {**headers, **EMERGENCY} if emergency else headers
                for kind in ("Binary", "DocumentReference"):
                    missing = world.client.get(f"/fhir/{kind}/{uuid.uuid4()}", headers=headers)
                    for doc in DOCS[:4]:
                        verdicts.rows += 1
                        row = f"{kind} {_row_id(actor, state, emergency, doc)}"
                        want = expected(actor, state, doc, emergency)
                        document_id = world.documents[(state.name, doc.name)]
                        answer = world.client.get(f"/fhir/{kind}/{document_id}", headers=headers)
                        entries = _new_audit_entries(world, pid)
                        if not want.allowed and (answer.status_code, answer.content) != (404, missing.content):
                            verdicts.mismatches.append(f"{row}: got {answer.status_code}, expected the missing document's 404")
                        # (The matrix world's documents are index rows without stored bytes: a Binary allowed is audited so.)
                        if want.allowed and kind == "DocumentReference" and answer.status_code != 200:
                            verdicts.mismatches.append(f"{row}: got {answer.status_code}, expected 200")
                        outcomes = [e.outcome for e in entries]
                        if outcomes != ["allowed" if want.allowed else "denied"]:
                            verdicts.mismatches.append(f"{row}: audit {outcomes}, expected one {'allowed' if want.allowed else 'denied'}")
    verdicts.conclude()
