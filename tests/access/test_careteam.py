"""The care team over time, through the access gate (pipeline/access/careteam.py and gate.check), on SQLite and
PostgreSQL: a grant's end at the boundary instant, the handover's checks."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.access import careteam, controls
from pipeline.access.gate import Access, Refused, check
from pipeline.access.policy import Action, Actor
from tests.api.careteam_world import add_document, add_patient, new_ins

END = dt.datetime(2031, 3, 30, 1, 0, tzinfo=dt.UTC)  # the night the clocks go forward in Paris
DR = Actor("rpps-1", "professional", "physician", facility_id="hospital:750000001")


def _read(rt, pid: str, doc: str, at: dt.datetime) -> Access | Refused:
    return check(rt, DR, Action.READ_METADATA, pid, document_id=doc, now=at)


@pytest.mark.parametrize("grant", ["authorized", "declared_consent", "facility"])
def test_a_grant_reads_until_the_instant_before_its_end_and_not_at_it(rt, grant):
    pid = add_patient(rt, new_ins(1))
    doc = add_document(rt, pid, author_id="someone")
    if grant == "authorized":
        controls.set_standing(rt, pid, DR.id, "authorized", END)
    elif grant == "declared_consent":
        careteam.declare_consent(rt, pid, DR.id, END)
    else:
        careteam.authorize_facility(rt, pid, "750000001", END)
    assert isinstance(_read(rt, pid, doc, END - dt.timedelta(microseconds=1)), Access)
    assert _read(rt, pid, doc, END) == Refused("not_in_care_team")


def test_a_second_authorization_replaces_the_first_and_its_end(rt):
    pid = add_patient(rt, new_ins(2))
    doc = add_document(rt, pid, author_id="someone")
    controls.set_standing(rt, pid, DR.id, "authorized", END)
    controls.set_standing(rt, pid, DR.id, "authorized")
    assert isinstance(_read(rt, pid, doc, END + dt.timedelta(days=1)), Access)


def test_blocking_ends_a_declared_consent(rt):
    pid = add_patient(rt, new_ins(3))
    doc = add_document(rt, pid, author_id="someone")
    careteam.declare_consent(rt, pid, DR.id)
    controls.set_standing(rt, pid, DR.id, "blocked")
    controls.set_standing(rt, pid, DR.id, "authorized", END)  # the block lifted: the declaration does not come back
    assert _read(rt, pid, doc, END) == Refused("not_in_care_team")


def test_a_handover_to_a_successor_blocked_since_the_proposal_is_refused(rt):
    pid = add_patient(rt, new_ins(4))
    controls.set_attending_physician(rt, pid, "rpps-attending")
    controls.set_standing(rt, pid, "rpps-2", "authorized")
    careteam.propose_transfer(rt, pid, "rpps-attending", "rpps-2")
    controls.set_standing(rt, pid, "rpps-2", "blocked")
    with pytest.raises(careteam.TransferError) as error:
        careteam.accept_transfer(rt, pid)
    assert error.value.code == "not_in_care_team"


def test_a_handover_proposed_by_a_former_attending_physician_is_not_pending(rt):
    pid = add_patient(rt, new_ins(5))
    controls.set_attending_physician(rt, pid, "rpps-attending")
    controls.set_standing(rt, pid, "rpps-2", "authorized")
    careteam.propose_transfer(rt, pid, "rpps-attending", "rpps-2")
    controls.set_attending_physician(rt, pid, "rpps-3")  # the patient chose someone else meanwhile
    with pytest.raises(careteam.TransferError) as error:
        careteam.accept_transfer(rt, pid)
    assert error.value.code == "no_transfer_pending"


def test_a_handover_to_an_author_of_the_record_is_allowed(rt):
    pid = add_patient(rt, new_ins(6))
    add_document(rt, pid, author_id="rpps-2")
    controls.set_attending_physician(rt, pid, "rpps-attending")
    careteam.propose_transfer(rt, pid, "rpps-attending", "rpps-2")
    assert careteam.accept_transfer(rt, pid) == "rpps-2"
