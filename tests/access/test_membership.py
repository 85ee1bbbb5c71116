"""Who is in the care team and on what ground (pipeline/access/membership.py), at the boundary of a grant's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.access.membership import Grant, GrantBasis, care_team_basis, facility_finess, in_force
from pipeline.access.policy import Actor, Record

END = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
DR = Actor("rpps-1", "professional", "physician", facility_id="hospital:750000001")


def test_a_grant_is_in_force_up_to_the_instant_before_its_end() -> None:
    grant = Grant("rpps-1", GrantBasis.AUTHORIZED, END)
    assert in_force(grant, END - timedelta(microseconds=1))
    assert not in_force(grant, END)


def test_a_grant_without_an_end_is_in_force_at_any_moment_and_one_with_an_end_at_no_moment_unknown() -> None:
    assert in_force(Grant("rpps-1", GrantBasis.AUTHORIZED), None)
    assert not in_force(Grant("rpps-1", GrantBasis.AUTHORIZED, END), None)


@pytest.mark.parametrize(("claim", "finess"), [("750000001", "750000001"), ("hospital:750000001", "750000001"),
                                               ("hospital:2A0000001", "2A0000001"), ("hospital:CHU", None), (None, None)])  # fmt: skip
def test_the_facility_claim_names_a_finess_alone_or_after_its_kind(claim, finess) -> None:
    assert facility_finess(claim) == finess


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"care_team": frozenset({"rpps-1"})}, "care_team"),
        ({"grants": (Grant("rpps-1", GrantBasis.DECLARED_CONSENT, END),)}, "declared_consent"),
        ({"grants": (Grant("750000001", GrantBasis.FACILITY, END),)}, "facility_authorized"),
        ({"authors": frozenset({"rpps-1"})}, "treated_patient"),
        ({"grants": (Grant("750000002", GrantBasis.FACILITY, END), Grant("rpps-2", GrantBasis.DECLARED_CONSENT, END))}, None),
    ],
)
def test_each_ground_of_the_care_team_gives_its_reason(fields, reason) -> None:
    record = Record("p", as_of=END - timedelta(hours=1), **fields)
    assert care_team_basis(DR.id, DR.facility_id, record) == reason


def test_the_patients_own_authorization_wins_over_authorship() -> None:
    record = Record("p", care_team=frozenset({"rpps-1"}), authors=frozenset({"rpps-1"}))
    assert care_team_basis(DR.id, DR.facility_id, record) == "care_team"
