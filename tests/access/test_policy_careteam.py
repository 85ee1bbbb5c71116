"""The access policy (pipeline/access/policy.py) on the care team over time, the operator and the lookup
(docs/domain.md, "Finding a record, and the care team over time"). Cases as in test_policy.py."""

from __future__ import annotations

import pytest

from pipeline.access.policy import Actor, Decision, Record, decide
from tests.access.test_policy import ACTOR_CASES, GP, OPEN, PATIENT, REPORT, TODAY

OPERATOR = Actor("op-1", "operator")


@pytest.mark.parametrize("action", ["set_minor", "set_representative"])
def test_the_operator_sets_minor_status_and_representatives_and_nobody_else_does(action: str) -> None:
    assert decide(OPERATOR, action, OPEN, None, today=TODAY) == Decision(True, "operator")
    for name in ("patient", "legal_representative", "physician", "emergency_regulator", "occupational_consented"):
        assert decide(ACTOR_CASES[name], action, OPEN, None, today=TODAY) == Decision(False, "not_allowed"), name


@pytest.mark.parametrize("action", ["list", "read_content", "lookup", "read_access_log", "export", "authorize_professional"])
def test_the_operator_reads_nothing_and_controls_nothing(action: str) -> None:
    assert decide(OPERATOR, action, OPEN, REPORT, today=TODAY) == Decision(False, "not_allowed")


def test_a_professional_outside_the_care_team_may_declare_the_patients_consent() -> None:
    stranger = Actor("rpps-new", "professional", "nurse")
    assert decide(stranger, "declare_consent", OPEN, None, today=TODAY) == Decision(True, "declared_consent")


def test_a_blocked_professional_may_not_declare_consent() -> None:
    record = Record(PATIENT, blocked=frozenset({GP.id}))
    assert decide(GP, "declare_consent", record, None, today=TODAY) == Decision(False, "blocked")


@pytest.mark.parametrize("action", ["declare_consent", "propose_attending_transfer"])
def test_the_patient_and_a_representative_neither_declare_consent_nor_propose_a_handover(action: str) -> None:
    for name in ("patient", "legal_representative"):
        assert decide(ACTOR_CASES[name], action, OPEN, None, today=TODAY) == Decision(False, "not_allowed")


def test_only_the_attending_physician_proposes_a_handover() -> None:
    record = Record(PATIENT, care_team=frozenset({GP.id, "rpps-nurse"}), attending_physician=GP.id)
    assert decide(GP, "propose_attending_transfer", record, None, today=TODAY) == Decision(True, "attending_physician")
    assert decide(ACTOR_CASES["nurse"], "propose_attending_transfer", record, None, today=TODAY) == Decision(False, "not_allowed")


@pytest.mark.parametrize(
    "action", ["revoke_consent", "authorize_facility", "revoke_facility", "read_care_team", "accept_attending_transfer",
               "oppose_record", "lift_opposition", "set_occupational_consent"],
)  # fmt: skip
def test_the_new_controls_are_the_patients_and_representatives_only(action: str) -> None:
    assert decide(ACTOR_CASES["patient"], action, OPEN, None, today=TODAY) == Decision(True, "patient")
    assert decide(ACTOR_CASES["legal_representative"], action, OPEN, None, today=TODAY) == Decision(True, "legal_representative")
    attending = Record(PATIENT, care_team=frozenset({GP.id}), attending_physician=GP.id)
    for actor in (GP, ACTOR_CASES["nurse"], ACTOR_CASES["emergency_regulator"], OPERATOR):
        assert decide(actor, action, attending, None, today=TODAY).allowed is False, actor


def test_a_lookup_is_decided_as_a_record_level_read() -> None:
    for name in ACTOR_CASES:
        actor = ACTOR_CASES[name]
        assert decide(actor, "lookup", OPEN, None, today=TODAY) == decide(actor, "list", OPEN, None, today=TODAY), name
