"""What a decision of the access policy (pipeline/access/policy.py) lets an actor learn: that a record exists
(`knows_of_record`), and which of its access log they read (`access_log_scope`). Cases as in test_policy.py."""

from __future__ import annotations

import pytest

from pipeline.access.policy import Actor, LogScope, Record, access_log_scope, decide, knows_of_record
from tests.access.test_policy import ACTOR_CASES, ATTENDING, GP, OPEN, PATIENT, REP, TODAY

KNOWING = Record(PATIENT, representatives=frozenset({REP}), occupational_consent=frozenset({"occ-1"}))


@pytest.mark.parametrize(
    ("name", "knows"),
    [
        ("patient", True),
        ("legal_representative", True),
        ("physician", True),
        ("dentist", True),
        ("emergency_regulator", True),
        ("occupational_consented", True),
        ("occupational_no_consent", False),
        ("administrative", False),
        ("employer", False),
        ("insurer", False),
        ("mutuelle", False),
        ("bank", False),
    ],
)
def test_who_may_learn_that_a_record_exists(name: str, knows: bool) -> None:
    assert knows_of_record(ACTOR_CASES[name], KNOWING) is knows


def test_another_patient_an_unregistered_representative_and_an_unknown_profession_may_not_learn_it() -> None:
    for actor in (Actor("ins-other", "patient"), Actor("other-parent", "legal_representative"), Actor("x", "professional", "astrologer")):
        assert knows_of_record(actor, KNOWING) is False, actor


@pytest.mark.parametrize(
    ("actor", "scope"),
    [
        (ACTOR_CASES["patient"], LogScope(own_only=False, hides_patient=False, justifications=True)),
        (ATTENDING, LogScope(own_only=False, hides_patient=False, justifications=True)),
        (ACTOR_CASES["legal_representative"], LogScope(own_only=False, hides_patient=True, justifications=False)),
        (GP, LogScope(own_only=True, hides_patient=False, justifications=False)),
        (ACTOR_CASES["emergency_regulator"], LogScope(own_only=True, hides_patient=False, justifications=False)),
    ],
)
def test_what_of_the_access_log_each_reader_sees(actor: Actor, scope: LogScope) -> None:
    assert access_log_scope(decide(actor, "read_access_log", OPEN, None, today=TODAY)) == scope


def test_the_access_log_scope_of_a_denial_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        access_log_scope(decide(ACTOR_CASES["employer"], "read_access_log", OPEN, None, today=TODAY))
