"""Who is in a record's care team, and on what ground: pure functions the policy (`policy.decide`) calls.

docs/domain.md, "Who may read" rule 2 and "Finding a record, and the care team over time": a professional is
in the care team when the patient authorized them, when they declared that the patient present consents,
when their facility is authorized for a stay, or when they authored a document of the record (they treated
the patient). An authorization, a declared consent and a facility's authorization may end: each is in force
strictly before its end (`until`), at the moment the record was read (`Record.as_of`). The patient's block
is checked by the policy before any of these.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pipeline.access.vocabulary import Reason

if TYPE_CHECKING:
    from pipeline.access.policy import Record

# A FINESS number: two characters of département (2A / 2B for Corsica) and seven digits.
FINESS_PATTERN = r"^(?:[0-9]{2}|2A|2B)[0-9]{7}$"


class GrantBasis(StrEnum):
    """Why a grant puts someone in the care team (the index's relation of the same name)."""

    AUTHORIZED = "authorized"  # the patient authorized the professional
    DECLARED_CONSENT = "declared_consent"  # the professional declared the patient present consents
    FACILITY = "facility"  # the patient authorized a facility (subject: its FINESS) for a stay


_REASONS = {
    GrantBasis.AUTHORIZED: Reason.CARE_TEAM,
    GrantBasis.DECLARED_CONSENT: Reason.DECLARED_CONSENT,
    GrantBasis.FACILITY: Reason.FACILITY_AUTHORIZED,
}


@dataclass(frozen=True)
class Grant:
    """One way into the care team that may end: who (a professional's id, a facility's FINESS), why, until when."""

    subject: str
    basis: GrantBasis
    until: dt.datetime | None = None  # None: until revoked


def is_finess(value: str) -> bool:
    return re.fullmatch(FINESS_PATTERN, value) is not None


def facility_finess(claim: str | None) -> str | None:
    """The FINESS a token's facility claim names: the claim itself, or what follows its kind (`hospital:<FINESS>`)."""
    if not claim:
        return None
    finess = claim.rpartition(":")[2]
    return finess if is_finess(finess) else None


def in_force(grant: Grant, as_of: dt.datetime | None) -> bool:
    """Before its end, at the moment the record was read; a grant with an end is never in force at no moment."""
    return grant.until is None or (as_of is not None and as_of < grant.until)


def care_team_basis(actor_id: str, facility: str | None, record: Record) -> Reason | None:
    """The ground on which the professional `actor_id` (of `facility`, their token's claim) is in the record's care
    team (a `Reason` to allow with), or None.

    The patient's own authorization first, then a declared consent, a facility's authorization, and last having
    authored a document. The block is not looked at here: the policy denies a blocked professional before.
    """
    if actor_id in record.care_team:
        return Reason.CARE_TEAM
    finess = facility_finess(facility)
    found: list[Reason] = []
    for grant in record.grants:
        if not in_force(grant, record.as_of):
            continue
        if grant.basis == GrantBasis.FACILITY:
            if finess is not None and grant.subject == finess:
                found.append(_REASONS[grant.basis])
        elif grant.subject == actor_id:
            found.append(_REASONS[grant.basis])
    for reason in (Reason.CARE_TEAM, Reason.DECLARED_CONSENT, Reason.FACILITY_AUTHORIZED):
        if reason in found:
            return reason
    return Reason.TREATED_PATIENT if actor_id in record.authors else None


def may_become_attending(record: Record, physician_id: str) -> bool:
    """Whether the attending physician may hand the status to `physician_id`: already in the care team as a
    person (authorized, declared consent, or an author of the record; a facility's authorization names no
    one), not blocked, not attending already. Whether they are a physician only their own token says: the
    policy gives attending powers to a physician only."""
    if physician_id in record.blocked or physician_id == record.attending_physician:
        return False
    return care_team_basis(physician_id, None, record) is not None
