"""A legal representative in the portal (api/portal/represent.py): they choose a record they represent, then read
it as the policy lets them (never a document hidden from representatives, never another record)."""

from __future__ import annotations

import pytest

from api.portal.sessions import COOKIE
from pipeline.access import controls
from pipeline.access.representatives import add_representative
from pipeline.access.tokens import Claims
from tests.api.portal.conftest import client_of, post_form

REPRESENTATIVE = "REP-0001"


@pytest.fixture(scope="module")
def represented(world):
    """patients[1] is represented by REPRESENTATIVE; one of its documents hidden from representatives."""
    _, rt, _, patients, documents, ins = world
    with rt.sessions() as session:
        add_representative(session, ins[patients[1]], REPRESENTATIVE)
    hidden = next(d for d in documents if d.patient_id == patients[1])
    controls.set_hidden_from_representatives(rt, hidden.id, True)
    return patients[1], hidden


def _representative(app):  # type: ignore[no-untyped-def]
    """Signed in as the identity provider would sign them in (kind legal_representative)."""
    client = client_of(app)
    session = app.state.portal_sessions.new(Claims(subject=REPRESENTATIVE, kind="legal_representative"))
    client.cookies.set(COOKIE, session.id)
    return client


def test_a_representative_chooses_the_record_first(world, represented):
    _, _, app, _, _, ins = world
    patient_id, _ = represented
    client = _representative(app)
    first = client.get("/patient/documents")
    assert first.status_code == 303 and first.headers["location"] == "/patient/records"
    assert f"INS {ins[patient_id]}" in client.get("/patient/records").text


def test_a_representative_reads_the_record_but_not_what_is_hidden_from_them(world, represented):
    _, _, app, _, documents, _ = world
    patient_id, hidden = represented
    client = _representative(app)
    assert post_form(client, "/patient/records", "/patient/records", {"record": patient_id}).status_code == 303
    listed = client.get("/patient/documents").text
    others = [d for d in documents if d.patient_id == patient_id and d.id != hidden.id]
    assert all(d.id in listed for d in others) and hidden.id not in listed
    assert client.get(f"/patient/documents/{hidden.id}").status_code == 404


def test_a_representative_cannot_choose_a_record_they_do_not_represent(world, represented):
    _, _, app, patients, documents, _ = world
    client = _representative(app)
    refused = post_form(client, "/patient/records", "/patient/records", {"record": patients[0]})
    assert refused.status_code == 404
    assert client.get("/patient/documents").status_code == 303  # still no record chosen
