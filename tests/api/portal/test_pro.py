"""The professional's pages (api/portal/pro.py): find by INS, read, refused when blocked, break-glass with a reason."""

from __future__ import annotations

from tests.api.portal.conftest import client_of, last_entries, post_form, sign_in

DOCTOR = "10000000001"
EMERGENCY_DOCTOR = "10000000003"  # in no care team


def _nir(first13: str) -> str:
    return first13 + f"{97 - int(first13) % 97:02d}"


def _doctor(world, rpps: str = DOCTOR):  # type: ignore[no-untyped-def]
    _, _, app, _, _, _ = world
    client = client_of(app)
    sign_in(client, f"professional:{rpps}")
    return client


def _authorize(world, rpps: str = DOCTOR) -> None:
    _, _, app, patients, _, _ = world
    patient = client_of(app)
    sign_in(patient, f"patient:{patients[0]}")
    post_form(patient, "/patient/privacy", "/patient/professionals", {"professional_id": rpps, "standing": "authorized"})


def _block(world, rpps: str) -> None:
    _, _, app, patients, _, _ = world
    patient = client_of(app)
    sign_in(patient, f"patient:{patients[0]}")
    post_form(patient, "/patient/privacy", "/patient/professionals", {"professional_id": rpps, "standing": "blocked"})


def test_an_authorized_professional_finds_the_record_by_ins_and_reads_a_document(world):
    _, rt, _, patients, documents, ins = world
    _authorize(world)
    client = _doctor(world)
    answer = post_form(client, "/pro", "/pro/lookup", {"ins": ins[patients[0]]})
    assert answer.status_code == 200 and f'href="/pro/records/{patients[0]}"' in answer.text
    doc = next(d for d in documents if d.patient_id == patients[0])
    assert doc.id in client.get(f"/pro/records/{patients[0]}").text
    page = client.get(f"/pro/records/{patients[0]}/documents/{doc.id}")
    assert page.status_code == 200
    content = client.get(f"/pro/records/{patients[0]}/documents/{doc.id}/content")
    assert content.status_code == 200
    entry = last_entries(rt, patients[0])[0]
    assert (entry.actor_id, entry.action, entry.outcome) == (DOCTOR, "read_content", "allowed")


def test_an_unknown_ins_and_a_malformed_one(world):
    client = _doctor(world)
    unknown = post_form(client, "/pro", "/pro/lookup", {"ins": _nir("1850175123456")})
    assert unknown.status_code == 200 and "Aucun dossier" in unknown.text
    assert post_form(client, "/pro", "/pro/lookup", {"ins": "1850175123456 00"}).status_code == 422


def test_a_blocked_professional_is_refused_with_the_reason_and_not_offered_break_glass(world):
    _, _, _, patients, _, _ = world
    _block(world, "10000000002")
    client = _doctor(world, "10000000002")
    page = client.get(f"/pro/records/{patients[0]}")
    assert page.status_code == 403 and "bloqué" in page.text
    assert "/emergency" not in page.text  # break-glass does not lift the patient's block


def test_a_professional_outside_the_care_team_is_offered_break_glass(world):
    _, _, _, patients, _, _ = world
    page = _doctor(world, "10000000003").get(f"/pro/records/{patients[0]}")
    assert page.status_code == 403 and f'href="/pro/records/{patients[0]}/emergency"' in page.text


def test_break_glass_needs_a_reason_then_reads_audited_as_an_emergency(world):
    _, rt, _, patients, documents, _ = world
    client = _doctor(world, "10000000003")
    url = f"/pro/records/{patients[0]}/emergency"
    assert "notifié au patient" in client.get(url).text  # the explicit warning
    assert post_form(client, url, url, {"reason": "   "}).status_code == 422
    assert post_form(client, url, url, {"reason": "arrêt cardiaque, patient inconscient"}).status_code == 303
    page = client.get(f"/pro/records/{patients[0]}")
    assert page.status_code == 200 and "urgence en cours" in page.text
    entry = last_entries(rt, patients[0])[0]
    assert (entry.actor_id, entry.action, entry.emergency, entry.reason) == ("10000000003", "emergency_read", True, "emergency_override")


def test_a_professional_reads_only_their_own_entries_of_the_access_log(world):
    _, _, _, patients, _, _ = world
    _authorize(world)
    client = _doctor(world)
    client.get(f"/pro/records/{patients[0]}")
    page = client.get(f"/pro/records/{patients[0]}/access-log")
    assert page.status_code == 200 and f"{DOCTOR}</td>" in page.text
    assert "10000000003" not in page.text  # another professional's emergency access is not theirs to see


def test_a_patient_is_not_shown_the_professional_pages(world):
    _, _, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    assert client.get("/pro").status_code == 404


def test_a_professional_declares_the_present_patients_consent_then_reads(world):
    _, rt, _, patients, documents, _ = world
    client = _doctor(world, EMERGENCY_DOCTOR)
    refused = client.get(f"/pro/records/{patients[1]}")
    assert refused.status_code == 403 and f'action="/pro/records/{patients[1]}/consent"' in refused.text
    assert post_form(client, f"/pro/records/{patients[1]}", f"/pro/records/{patients[1]}/consent", {}).status_code == 303
    assert last_entries(rt, patients[1])[0].action == "declare_consent"
    listed = client.get(f"/pro/records/{patients[1]}")
    assert listed.status_code == 200 and any(d.id in listed.text for d in documents if d.patient_id == patients[1])
