"""The access policy (pipeline/access/policy.py) against docs/domain.md, "Who may read" and "What the patient controls".

The exhaustive test checks `decide` against `expected`, written here from docs/domain.md and the matrix choices
(READABLE below), without calling the module's helpers or its matrix.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.access.policy import (
    ACTIONS,
    CONTROL_ACTIONS,
    DOCUMENT_ACTIONS,
    REASON_CODES,
    Actor,
    Decision,
    DocumentView,
    Grant,
    GrantBasis,
    Record,
    decide,
    load_matrix,
)
from tests.access.test_matrix import matrix_file

TODAY = date(2024, 6, 15)
PATIENT = "ins-patient"
REP = "rep-parent"
REASON = "unconscious patient, suspected overdose"

# One document per class (two where the matrix tells types apart), written by someone else elsewhere.
DOCS = {
    "operative": ("10", "34874-8"),
    "stay": ("10", "34112-3"),
    "delivery": ("10", "15508-5"),
    "patient_summary": ("11", "60591-5"),
    "episode_summary": ("11", "34133-9"),
    "psychiatric_summary": ("11", "59259-2"),
    "imaging": ("31", "18748-4"),
    "medicines_rx": ("42", "57833-6"),
    "dispensation": ("43", "60593-1"),
    "care_plan": ("44", "care-plan"),
    "vaccination": ("45", "87273-9"),
    "certificate": ("52", "CERT"),
    "reimbursement": ("60", "REMB"),
    "advance_directives": ("90", "EXPPAT_3"),
    "patient_added": ("90", "DOCPAT01"),
    "administrative": ("95", "unknown"),
}
ALL = frozenset(DOCS)

# What each matrix subject may read among DOCS: written from docs/domain.md rule 7 and the documented choices.
# Rule 7's own examples: a dentist reads no advance directives nor psychiatric summaries, a podiatrist no
# delivery reports. Rule 5: the SAMU regulator reads "likewise", as a physician under break-glass: everything.
READABLE = {
    "physician": ALL,
    "nurse": ALL - {"certificate", "reimbursement", "patient_added", "administrative"},
    "dentist": frozenset({"operative", "stay", "patient_summary", "imaging", "medicines_rx", "dispensation", "vaccination"}),
    "pharmacist": frozenset({"patient_summary", "episode_summary", "medicines_rx", "dispensation", "vaccination"}),
    "podiatrist": frozenset({"patient_summary", "imaging"}),
    "emergency_regulator": ALL,
    "occupational_physician": frozenset({"operative", "stay", "patient_summary", "episode_summary", "imaging", "vaccination"}),
}

FINESS = "750000001"
FACILITY = f"hospital:{FINESS}"  # the professionals' facility claim: a source naming its FINESS
AS_OF = datetime(2024, 6, 15, 10, 30, tzinfo=UTC)  # the moment the record is read

ACTOR_CASES = {
    "patient": Actor(PATIENT, "patient"),
    "legal_representative": Actor(REP, "legal_representative"),
    "physician": Actor("rpps-gp", "professional", "physician", "general_practice", FACILITY),
    "nurse": Actor("rpps-nurse", "professional", "nurse", None, FACILITY),
    "dentist": Actor("rpps-dentist", "professional", "dentist", None, FACILITY),
    "pharmacist": Actor("rpps-pharma", "professional", "pharmacist", None, FACILITY),
    "podiatrist": Actor("rpps-podo", "professional", "podiatrist", None, FACILITY),
    "emergency_regulator": Actor("samu-1", "emergency_regulator", None, None, "samu"),
    "administrative": Actor("clerk", "administrative", None, None, "fac-a"),
    "employer": Actor("acme", "employer"),
    "insurer": Actor("cpam", "insurer"),
    "mutuelle": Actor("mut", "mutuelle"),
    "bank": Actor("bank", "bank"),
    "occupational_consented": Actor("occ-1", "occupational_physician"),
    "occupational_no_consent": Actor("occ-2", "occupational_physician"),
}


# How a professional stands in the care team (docs/domain.md, "Finding a record, and the care team over time"), and
# the reason a read on that ground is allowed with. "expired": an authorization, a declared consent and a facility
# authorization that all ended at the very moment the record is read.
TEAM_WAYS = {"none": None, "authorized": "care_team", "authored": "treated_patient", "declared": "declared_consent",
             "facility": "facility_authorized", "expired": None}  # fmt: skip


def record_for(actor: Actor, team: str, **fields) -> Record:
    later, ended = AS_OF + timedelta(microseconds=1), AS_OF
    ways = {
        "none": {},
        "authorized": {"care_team": frozenset({actor.id})},
        "authored": {"authors": frozenset({actor.id})},
        "declared": {"grants": (Grant(actor.id, GrantBasis.DECLARED_CONSENT, later),)},
        "facility": {"grants": (Grant(FINESS, GrantBasis.FACILITY, later),)},
        "expired": {"grants": (Grant(actor.id, GrantBasis.AUTHORIZED, ended), Grant(actor.id, GrantBasis.DECLARED_CONSENT, ended),
                               Grant(FINESS, GrantBasis.FACILITY, ended))},
    }  # fmt: skip
    return Record(PATIENT, as_of=AS_OF, **ways[team], **fields)


def expected(name: str, actor: Actor, action: str, doc: str, *, masked, blocked, attending, team, status, opposed):
    """(allowed, reason, emergency) from docs/domain.md, independently of pipeline.access.policy."""
    kind = actor.kind
    if kind in ("employer", "insurer", "mutuelle", "bank"):
        return False, "forbidden_party", False
    if kind == "administrative":
        return False, "administrative_staff", False
    if status == "opposed":
        return False, "record_opposed", False  # the record exists unless the patient opposed it
    if status != "open":
        return False, "record_closed", False
    if kind in ("patient", "legal_representative"):
        if action == "emergency_read":
            return False, "not_allowed", False
        return True, kind, False  # masked documents stay visible to them
    if action == "emergency_read":
        if kind not in ("professional", "emergency_regulator"):
            return False, "not_allowed", False
        if opposed:
            return False, "emergency_opposed", False
        if blocked:
            return False, "blocked", False
        subject = actor.profession if kind == "professional" else "emergency_regulator"
        if doc not in READABLE[subject]:
            return False, "matrix_forbids", False
        if masked and not (attending and actor.profession == "physician"):  # docs/domain.md rule 4: the attending reads masked documents
            return False, "masked", False
        return True, "emergency_override", True
    if kind == "occupational_physician":
        if name != "occupational_consented":
            return False, "no_consent", False
        if blocked:
            return False, "blocked", False
        if doc not in READABLE["occupational_physician"]:
            return False, "matrix_forbids", False
        return (False, "masked", False) if masked else (True, "occupational_consent", False)
    if kind == "emergency_regulator":
        return False, "not_allowed", False
    if blocked:
        return False, "blocked", False
    if attending and actor.profession == "physician":
        return True, "attending_physician", False
    if TEAM_WAYS[team] is None:
        return False, "not_in_care_team", False
    if doc not in READABLE[actor.profession]:
        return False, "matrix_forbids", False
    if masked:
        return False, "masked", False
    return True, TEAM_WAYS[team], False


@pytest.mark.parametrize("name", list(ACTOR_CASES))
def test_decisions_match_domain_rules_for_every_combination(name: str) -> None:
    actor = ACTOR_CASES[name]
    mismatches = []
    flags = itertools.product([False, True], repeat=4)
    # The ways into the care team matter to professionals only: the others are tried in and out of it.
    ways = list(TEAM_WAYS) if actor.kind == "professional" else ["none", "authorized"]
    for doc, (masked, blocked, attending, opposed), team, status, action in itertools.product(
        DOCS, flags, ways, ["open", "closed", "opposed"], ["read_content", "read_metadata", "list", "emergency_read"]
    ):
        class_code, type_code = DOCS[doc]
        record = record_for(
            actor,
            team,
            status=status,
            representatives=frozenset({REP}),
            blocked=frozenset({actor.id}) if blocked else frozenset(),
            attending_physician=actor.id if attending else "someone-else",
            emergency_opposed=opposed,
            occupational_consent=frozenset({"occ-1"}),
        )
        document = DocumentView("d1", class_code, type_code, masked=masked, author_id="author", author_facility_id="fac-z")
        got = decide(actor, action, record, document, today=TODAY, emergency_reason=REASON)
        want = expected(
            name, actor, action, doc, masked=masked, blocked=blocked, attending=attending, team=team, status=status, opposed=opposed
        )
        if (got.allowed, got.reason, got.emergency) != want:
            mismatches.append((doc, masked, blocked, attending, team, opposed, status, action, got, want))
    assert mismatches == []


# ---------------------------------------------------------------------------------------------
# Focused rules
# ---------------------------------------------------------------------------------------------

OPEN = Record(
    PATIENT,
    representatives=frozenset({REP}),
    care_team=frozenset({"rpps-gp", "rpps-nurse", "rpps-dentist", "rpps-pharma"}),
    attending_physician="rpps-att",
)
GP = ACTOR_CASES["physician"]
ATTENDING = Actor("rpps-att", "professional", "physician", "general_practice", "fac-b")
REPORT = DocumentView("r1", "10", "11488-4", author_id="author", author_facility_id="fac-z")


def _held(until: date, deposited: date) -> DocumentView:
    return DocumentView("bio", "10", "11502-2", hidden_from_patient_until=until, deposited_on=deposited)


def test_patient_cannot_read_document_held_until_announcement() -> None:
    doc = _held(date(2024, 6, 20), date(2024, 6, 10))
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=TODAY) == Decision(False, "hidden_until_announcement")


def test_held_document_is_hidden_from_listing_and_metadata_too() -> None:
    doc = _held(date(2024, 6, 20), date(2024, 6, 10))
    for action in ("list", "read_metadata", "mask", "export"):
        assert decide(ACTOR_CASES["patient"], action, OPEN, doc, today=TODAY).reason == "hidden_until_announcement"


def test_held_document_becomes_visible_on_the_announcement_date() -> None:
    doc = _held(date(2024, 6, 15), date(2024, 6, 10))
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=TODAY) == Decision(True, "patient")


def test_held_document_is_released_automatically_one_month_after_deposit() -> None:
    doc = _held(date(2025, 1, 1), date(2024, 5, 15))
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=date(2024, 6, 14)).allowed is False
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=date(2024, 6, 15)).allowed is True


def test_one_month_after_31_january_is_the_end_of_february() -> None:
    doc = _held(date(2025, 1, 1), date(2024, 1, 31))
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=date(2024, 2, 28)).allowed is False
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=date(2024, 2, 29)).allowed is True


def test_held_document_is_hidden_from_representatives_as_from_the_patient() -> None:
    doc = _held(date(2024, 6, 20), date(2024, 6, 10))
    assert decide(ACTOR_CASES["legal_representative"], "read_content", OPEN, doc, today=TODAY).reason == "hidden_until_announcement"


def test_held_document_stays_readable_by_care_team() -> None:
    doc = _held(date(2024, 6, 20), date(2024, 6, 10))
    assert decide(GP, "read_content", OPEN, doc, today=TODAY) == Decision(True, "care_team")


def test_minor_hidden_document_is_denied_to_representatives() -> None:
    minor = Record(PATIENT, is_minor=True, representatives=frozenset({REP}))
    doc = DocumentView("c1", "42", "57833-6", hidden_from_representatives=True)
    assert decide(ACTOR_CASES["legal_representative"], "read_content", minor, doc, today=TODAY) == Decision(
        False, "hidden_from_representative"
    )
    assert decide(ACTOR_CASES["legal_representative"], "list", minor, doc, today=TODAY).allowed is False


def test_minor_reads_the_document_hidden_from_representatives() -> None:
    minor = Record(PATIENT, is_minor=True, representatives=frozenset({REP}))
    doc = DocumentView("c1", "42", "57833-6", hidden_from_representatives=True)
    assert decide(ACTOR_CASES["patient"], "read_content", minor, doc, today=TODAY) == Decision(True, "patient")


def test_representative_not_named_on_the_record_is_denied() -> None:
    stranger = Actor("other-parent", "legal_representative")
    assert decide(stranger, "read_content", OPEN, REPORT, today=TODAY) == Decision(False, "not_allowed")


def test_patient_cannot_read_another_patients_record() -> None:
    assert decide(Actor("ins-other", "patient"), "read_content", OPEN, REPORT, today=TODAY) == Decision(False, "not_allowed")


def test_masked_document_stays_visible_to_the_patient() -> None:
    doc = DocumentView("m", "10", "11488-4", masked=True)
    assert decide(ACTOR_CASES["patient"], "read_content", OPEN, doc, today=TODAY) == Decision(True, "patient")


def test_masked_document_is_visible_to_its_author() -> None:
    doc = DocumentView("m", "10", "11488-4", masked=True, author_id=GP.id, author_facility_id="fac-z")
    assert decide(GP, "read_content", OPEN, doc, today=TODAY) == Decision(True, "care_team")


def test_masked_document_is_visible_to_the_authors_facility() -> None:
    doc = DocumentView("m", "10", "11488-4", masked=True, author_id="colleague", author_facility_id=GP.facility_id)
    assert decide(GP, "read_content", OPEN, doc, today=TODAY) == Decision(True, "care_team")


def test_masked_document_is_denied_to_other_care_team_members() -> None:
    doc = DocumentView("m", "10", "11488-4", masked=True, author_id="colleague", author_facility_id="fac-z")
    assert decide(GP, "read_content", OPEN, doc, today=TODAY) == Decision(False, "masked")


def test_attending_physician_reads_masked_documents() -> None:
    doc = DocumentView("m", "90", "EXPPAT_3", masked=True, author_id="x", author_facility_id="fac-z")
    assert decide(ATTENDING, "read_content", OPEN, doc, today=TODAY) == Decision(True, "attending_physician")


def test_attending_physician_reads_the_whole_access_log() -> None:
    assert decide(ATTENDING, "read_access_log", OPEN, None, today=TODAY) == Decision(True, "attending_physician")


def test_attending_physician_may_block_a_professional() -> None:
    assert decide(ATTENDING, "block_professional", OPEN, None, today=TODAY) == Decision(True, "attending_physician")


def test_blocked_attending_physician_is_denied() -> None:
    record = Record(PATIENT, attending_physician=ATTENDING.id, blocked=frozenset({ATTENDING.id}))
    assert decide(ATTENDING, "read_content", record, REPORT, today=TODAY) == Decision(False, "blocked")


def test_attending_powers_need_a_physician() -> None:
    nurse = ACTOR_CASES["nurse"]
    record = Record(PATIENT, attending_physician=nurse.id)
    assert decide(nurse, "read_content", record, REPORT, today=TODAY) == Decision(False, "not_in_care_team")


def test_professional_outside_care_team_is_denied() -> None:
    outsider = Actor("rpps-out", "professional", "physician")
    assert decide(outsider, "read_content", OPEN, REPORT, today=TODAY) == Decision(False, "not_in_care_team")


def test_professional_reads_only_own_access_log_entries() -> None:
    outsider = Actor("rpps-out", "professional", "physician")
    assert decide(outsider, "read_access_log", OPEN, None, today=TODAY) == Decision(True, "own_entries")
    assert decide(GP, "read_access_log", OPEN, None, today=TODAY) == Decision(True, "own_entries")


def test_matrix_applies_to_care_team_members() -> None:
    pharmacist = ACTOR_CASES["pharmacist"]
    operative = DocumentView("o", "10", "34874-8")
    assert decide(pharmacist, "read_content", OPEN, operative, today=TODAY) == Decision(False, "matrix_forbids")
    prescription = DocumentView("p", "42", "57833-6")
    assert decide(pharmacist, "read_content", OPEN, prescription, today=TODAY) == Decision(True, "care_team")


def test_professional_without_known_profession_reads_nothing() -> None:
    unknown = Actor("rpps-x", "professional", "astrologer")
    record = Record(PATIENT, care_team=frozenset({unknown.id}))
    assert decide(unknown, "read_content", record, REPORT, today=TODAY) == Decision(False, "matrix_forbids")


def test_care_history_follows_the_matrix_for_professionals() -> None:
    assert decide(ACTOR_CASES["patient"], "read_care_history", OPEN, None, today=TODAY) == Decision(True, "patient")
    assert decide(GP, "read_care_history", OPEN, None, today=TODAY) == Decision(True, "care_team")
    assert decide(ACTOR_CASES["pharmacist"], "read_care_history", OPEN, None, today=TODAY) == Decision(False, "matrix_forbids")


@pytest.mark.parametrize(
    ("actor", "want"),
    [
        (Actor("rpps-er", "professional", "physician", "emergency_medicine"), Decision(True, "emergency_override", emergency=True)),
        (ACTOR_CASES["emergency_regulator"], Decision(True, "emergency_override", emergency=True)),
        (Actor("rpps-er-nurse", "professional", "nurse"), Decision(False, "matrix_forbids")),  # nurses read no class 60
        (ACTOR_CASES["occupational_consented"], Decision(False, "not_allowed")),  # no break-glass
        (ACTOR_CASES["patient"], Decision(False, "not_allowed")),  # break-glass is a professional's act
    ],
)
def test_break_glass_reads_the_care_history_as_class_60(actor: Actor, want: Decision) -> None:
    record = Record(PATIENT, occupational_consent=frozenset({"occ-1"}))
    assert decide(actor, "read_care_history", record, None, today=TODAY, emergency_reason=REASON) == want


def test_break_glass_on_the_care_history_stops_at_the_opposition_and_the_block() -> None:
    er = Actor("rpps-er", "professional", "physician")
    opposed, blocked = Record(PATIENT, emergency_opposed=True), Record(PATIENT, blocked=frozenset({er.id}))
    assert decide(er, "read_care_history", opposed, None, today=TODAY, emergency_reason=REASON) == Decision(False, "emergency_opposed")
    assert decide(er, "read_care_history", blocked, None, today=TODAY, emergency_reason=REASON) == Decision(False, "blocked")
    assert decide(er, "read_care_history", OPEN, None, today=TODAY, emergency_reason="  ") == Decision(False, "not_in_care_team")


def test_listing_follows_read_metadata_for_every_document() -> None:
    for actor, (class_code, type_code), masked in itertools.product(ACTOR_CASES.values(), DOCS.values(), (False, True)):
        doc = DocumentView("d", class_code, type_code, masked=masked, author_id="a", author_facility_id="fac-z")
        listed = decide(actor, "list", OPEN, doc, today=TODAY)
        assert listed == decide(actor, "read_metadata", OPEN, doc, today=TODAY)


def test_occupational_physician_without_consent_is_denied() -> None:
    occ = ACTOR_CASES["occupational_no_consent"]
    assert decide(occ, "read_content", OPEN, REPORT, today=TODAY) == Decision(False, "no_consent")


def test_occupational_physician_with_consent_reads_what_the_matrix_allows() -> None:
    occ = ACTOR_CASES["occupational_consented"]
    record = Record(PATIENT, occupational_consent=frozenset({occ.id}))
    assert decide(occ, "read_content", record, REPORT, today=TODAY) == Decision(True, "occupational_consent")
    directives = DocumentView("ad", "90", "EXPPAT_3")
    assert decide(occ, "read_content", record, directives, today=TODAY) == Decision(False, "matrix_forbids")
    assert decide(occ, "read_care_history", record, None, today=TODAY) == Decision(False, "matrix_forbids")


def test_occupational_physician_has_no_break_glass() -> None:
    occ = ACTOR_CASES["occupational_consented"]
    record = Record(PATIENT, occupational_consent=frozenset({occ.id}))
    assert decide(occ, "emergency_read", record, REPORT, today=TODAY, emergency_reason=REASON) == Decision(False, "not_allowed")


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_emergency_read_without_a_reason_is_denied(reason: str | None) -> None:
    outsider = Actor("rpps-er", "professional", "physician", "emergency_medicine")
    got = decide(outsider, "emergency_read", OPEN, REPORT, today=TODAY, emergency_reason=reason)
    assert got == Decision(False, "emergency_requires_reason")


def test_emergency_read_outside_care_team_is_an_override() -> None:
    outsider = Actor("rpps-er", "professional", "physician", "emergency_medicine")
    got = decide(outsider, "emergency_read", OPEN, REPORT, today=TODAY, emergency_reason=REASON)
    assert got == Decision(True, "emergency_override", emergency=True)


def test_emergency_regulator_reads_advance_directives_through_break_glass() -> None:
    directives = DocumentView("ad", "90", "EXPPAT_3")
    got = decide(ACTOR_CASES["emergency_regulator"], "emergency_read", OPEN, directives, today=TODAY, emergency_reason=REASON)
    assert got == Decision(True, "emergency_override", emergency=True)


def test_emergency_regulator_cannot_read_outside_break_glass() -> None:
    assert decide(ACTOR_CASES["emergency_regulator"], "read_content", OPEN, REPORT, today=TODAY) == Decision(False, "not_allowed")


def test_emergency_opposition_denies_professionals_and_regulator() -> None:
    record = Record(PATIENT, emergency_opposed=True)
    for actor in (Actor("rpps-er", "professional", "physician"), ACTOR_CASES["emergency_regulator"]):
        got = decide(actor, "emergency_read", record, REPORT, today=TODAY, emergency_reason=REASON)
        assert got == Decision(False, "emergency_opposed")


def test_emergency_read_still_applies_the_matrix() -> None:
    directives = DocumentView("ad", "90", "EXPPAT_3")
    dentist = Actor("rpps-d2", "professional", "dentist")
    got = decide(dentist, "emergency_read", OPEN, directives, today=TODAY, emergency_reason=REASON)
    assert got == Decision(False, "matrix_forbids")


def test_emergency_read_does_not_open_masked_documents() -> None:
    doc = DocumentView("m", "10", "11488-4", masked=True, author_id="x", author_facility_id="fac-z")
    outsider = Actor("rpps-er", "professional", "physician", facility_id="fac-er")
    got = decide(outsider, "emergency_read", OPEN, doc, today=TODAY, emergency_reason=REASON)
    assert got == Decision(False, "masked")


def test_emergency_read_does_not_override_a_block() -> None:
    record = Record(PATIENT, blocked=frozenset({"rpps-er"}))
    got = decide(Actor("rpps-er", "professional", "physician"), "emergency_read", record, REPORT, today=TODAY, emergency_reason=REASON)
    assert got == Decision(False, "blocked")


@pytest.mark.parametrize("kind", ["employer", "insurer", "mutuelle", "bank"])
def test_forbidden_parties_are_denied_whatever_the_consent(kind: str) -> None:
    actor = Actor("x", kind, "physician")
    record = Record(
        PATIENT,
        representatives=frozenset({"x"}),
        care_team=frozenset({"x"}),
        attending_physician="x",
        occupational_consent=frozenset({"x"}),
    )
    for action in sorted(ACTIONS):
        doc = REPORT if action in DOCUMENT_ACTIONS else None
        assert decide(actor, action, record, doc, today=TODAY, emergency_reason=REASON) == Decision(False, "forbidden_party")


def test_administrative_staff_are_denied() -> None:
    clerk = Actor("clerk", "administrative", facility_id="fac-z")
    record = Record(PATIENT, care_team=frozenset({"clerk"}))
    assert decide(clerk, "read_metadata", record, REPORT, today=TODAY) == Decision(False, "administrative_staff")


@pytest.mark.parametrize("action", sorted(CONTROL_ACTIONS))
def test_patient_and_representative_may_use_control_actions(action: str) -> None:
    for actor, reason in ((ACTOR_CASES["patient"], "patient"), (ACTOR_CASES["legal_representative"], "legal_representative")):
        assert decide(actor, action, OPEN, REPORT, today=TODAY) == Decision(True, reason)


@pytest.mark.parametrize("action", sorted(CONTROL_ACTIONS))
def test_control_actions_are_denied_to_everyone_else(action: str) -> None:
    others = [GP, ACTOR_CASES["emergency_regulator"], ACTOR_CASES["occupational_consented"]]
    if action != "block_professional":
        others.append(ATTENDING)
    record = Record(PATIENT, care_team=frozenset({GP.id}), attending_physician=ATTENDING.id, occupational_consent=frozenset({"occ-1"}))
    for actor in others:
        assert decide(actor, action, record, REPORT, today=TODAY) == Decision(False, "not_allowed"), actor


def test_closed_record_is_closed_even_to_the_patient() -> None:
    record = Record(PATIENT, status="closed")
    for action in ("read_content", "export", "read_access_log", "close_record", "lift_opposition"):
        assert decide(ACTOR_CASES["patient"], action, record, REPORT, today=TODAY) == Decision(False, "record_closed")


def test_an_opposed_record_is_read_by_nobody_the_patient_included() -> None:
    record = Record(PATIENT, status="opposed", representatives=frozenset({REP}))
    for actor in (ACTOR_CASES["patient"], ACTOR_CASES["legal_representative"]):
        for action in ("read_content", "export", "read_access_log", "oppose_record", "authorize_professional"):
            assert decide(actor, action, record, REPORT, today=TODAY) == Decision(False, "record_opposed")


@pytest.mark.parametrize("action", ["lift_opposition", "close_record"])
def test_the_patient_or_a_representative_may_lift_the_opposition_or_close_an_opposed_record(action: str) -> None:
    record = Record(PATIENT, status="opposed", representatives=frozenset({REP}))
    assert decide(ACTOR_CASES["patient"], action, record, None, today=TODAY).allowed
    assert decide(ACTOR_CASES["legal_representative"], action, record, None, today=TODAY).allowed


def test_nobody_else_may_lift_an_opposition() -> None:
    record = Record(PATIENT, status="opposed", care_team=frozenset({GP.id}), attending_physician=GP.id)
    for name in ("physician", "emergency_regulator", "occupational_consented"):
        assert decide(ACTOR_CASES[name], "lift_opposition", record, None, today=TODAY) == Decision(False, "record_opposed")


def test_patient_has_no_break_glass() -> None:
    got = decide(ACTOR_CASES["patient"], "emergency_read", OPEN, REPORT, today=TODAY, emergency_reason=REASON)
    assert got == Decision(False, "not_allowed")


@pytest.mark.parametrize("action", ["hide_from_representatives", "show_to_representatives"])
def test_only_the_patient_hides_a_document_from_their_representatives(action: str) -> None:
    record = Record(PATIENT, representatives=frozenset({ACTOR_CASES["legal_representative"].id}), attending_physician=ATTENDING.id)
    assert decide(ACTOR_CASES["patient"], action, record, REPORT, today=TODAY) == Decision(True, "patient")
    for actor in (ACTOR_CASES["legal_representative"], ATTENDING, GP):
        assert decide(actor, action, record, REPORT, today=TODAY) == Decision(False, "not_allowed"), actor


def test_unknown_action_is_denied() -> None:
    assert decide(ACTOR_CASES["patient"], "delete_record", OPEN, None, today=TODAY) == Decision(False, "unknown_action")


def test_mask_without_a_document_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs a document"):
        decide(ACTOR_CASES["patient"], "mask", OPEN, None, today=TODAY)


def test_every_reason_returned_is_a_documented_code() -> None:
    for actor, action in itertools.product(ACTOR_CASES.values(), sorted(ACTIONS)):
        got = decide(actor, action, OPEN, REPORT, today=TODAY, emergency_reason=REASON)
        assert got.reason in REASON_CODES


def test_decide_uses_the_matrix_it_is_given(tmp_path: Path) -> None:
    matrix = load_matrix(matrix_file(tmp_path, "physician,,42,,allow,\n"))
    assert decide(GP, "read_content", OPEN, REPORT, today=TODAY, matrix=matrix) == Decision(False, "matrix_forbids")
