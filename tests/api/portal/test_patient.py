"""The patient's pages (api/portal/patient.py): what they show, and the audit entry each leaves."""

from __future__ import annotations

from tests.api.portal.conftest import client_of, last_entries, sign_in


def _patient(world, which: int = 0):  # type: ignore[no-untyped-def]
    _, _, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[which]}")
    return client


def test_the_home_page_shows_the_latest_documents_and_accesses(world):
    _, rt, _, patients, _, _ = world
    client = _patient(world)
    page = client.get("/patient")
    assert page.status_code == 200 and "Derniers documents" in page.text and "Derniers accès" in page.text
    assert [e.action for e in last_entries(rt, patients[0], 2)] == ["read_access_log", "list"]


def test_the_home_page_shows_others_accesses_not_the_patients_own_views(world):
    _, _, _, patients, _, _ = world
    client = _patient(world)
    client.get("/patient/documents")
    latest = client.get("/patient").text.split('id="latest-accesses"')[1]
    assert "a déposé un document" in latest and "a consulté la liste des documents" not in latest


def test_the_document_list_is_audited_like_the_api_list(world):
    _, rt, _, patients, _, _ = world
    client = _patient(world)
    client.get("/patient/documents")
    entry = last_entries(rt, patients[0])[0]
    assert (entry.action, entry.outcome, entry.actor_id, entry.actor_kind) == ("list", "allowed", patients[0], "patient")


def test_the_document_list_filters_by_class_and_period(world):
    _, _, _, patients, documents, _ = world
    client = _patient(world)
    mine = [d for d in documents if d.patient_id == patients[0]]
    chosen = mine[0]
    page = client.get(f"/patient/documents?class_code={chosen.class_code}").text
    assert all((d.id in page) == (d.class_code == chosen.class_code) for d in mine)
    day = chosen.service_date.isoformat()
    page = client.get(f"/patient/documents?from={day}&to={day}").text
    assert all((d.id in page) == (d.service_date == chosen.service_date) for d in mine)


def test_the_document_list_pages(world, monkeypatch):
    from api.portal import reading

    _, _, _, patients, documents, _ = world
    monkeypatch.setattr(reading, "PAGE_SIZE", 2)
    client = _patient(world)
    mine = {d.id for d in documents if d.patient_id == patients[0]}
    seen = set()
    for number in range(1, len(mine) // 2 + 2):
        page = client.get(f"/patient/documents?page={number}").text
        seen |= {d for d in mine if d in page}
    assert seen == mine
    assert "Page suivante" in client.get("/patient/documents?page=1").text


def test_a_pdf_is_shown_in_a_frame_and_served_inline_from_this_origin(world):
    _, rt, _, patients, documents, _ = world
    client = _patient(world)
    pdf = next(d for d in documents if d.patient_id == patients[0] and d.mime_type == "application/pdf")
    page = client.get(f"/patient/documents/{pdf.id}")
    assert f'<iframe class="pdf" src="/patient/documents/{pdf.id}/content"' in page.text
    assert last_entries(rt, patients[0])[0].action == "read_metadata"
    content = client.get(f"/patient/documents/{pdf.id}/content")
    assert content.headers["content-type"] == "application/pdf" and content.content.startswith(b"%PDF")
    assert content.headers["content-disposition"].startswith("inline") and content.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in content.headers["content-security-policy"]
    assert last_entries(rt, patients[0])[0].action == "read_content"


def test_the_care_history_page_is_audited_as_the_care_history_read(world):
    _, rt, _, patients, _, _ = world
    page = _patient(world).get("/patient/care")
    assert page.status_code == 200 and "24" in page.text
    assert last_entries(rt, patients[0])[0].action == "read_care_history"


def test_the_access_log_page_shows_the_newest_entries_first(world):
    client = _patient(world)
    client.get("/patient/care")
    page = client.get("/patient/access-log").text
    rows = page.split("<tbody>")[1].split("</tr>")
    assert "a consulté l&#39;historique des soins" in rows[0] or "historique des soins" in rows[1]  # the log read itself may come first
    assert "a déposé un document" in page.split("<tbody>")[1].split("</tbody>")[0]


def test_the_access_log_marks_emergency_accesses(world):
    from pipeline.access.gate import check
    from pipeline.access.policy import Action, Actor, ActorKind

    _, rt, _, patients, _, _ = world
    doctor = Actor("10000000099", ActorKind.PROFESSIONAL, profession="physician")
    check(rt, doctor, Action.EMERGENCY_READ, patients[1], emergency_reason="unconscious after a fall")
    page = _patient(world, 1).get("/patient/access-log").text
    assert '<tr class="emergency">' in page and "URGENCE" in page and "unconscious after a fall" in page


def test_patient_a_never_sees_patient_b_data(world):
    _, _, _, patients, documents, ins = world
    client = _patient(world, 0)
    theirs = [d for d in documents if d.patient_id == patients[1]]
    for url in ("/patient", "/patient/documents", "/patient/access-log", "/patient/care", "/patient/privacy"):
        page = client.get(url).text
        assert patients[1] not in page and ins[patients[1]] not in page and not any(d.id in page for d in theirs), url
    for d in theirs:
        for url in (f"/patient/documents/{d.id}", f"/patient/documents/{d.id}/content"):
            response = client.get(url)
            assert response.status_code == 404 and d.id not in response.text
    # Its answer is the one of a document that does not exist at all.
    missing = client.get("/patient/documents/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.text == client.get(f"/patient/documents/{theirs[0].id}").text


def test_a_professional_is_not_shown_the_patient_pages(world):
    _, _, app, _, _, _ = world
    client = client_of(app)
    sign_in(client, "professional:10000000001")
    assert client.get("/patient/documents").status_code == 404


def test_a_cda_document_page_shows_its_sections_as_text(world):
    _, rt, app, _, documents, _ = world
    cda = next(d for d in documents if d.mime_type == "application/xml")
    client = client_of(app)
    sign_in(client, f"patient:{cda.patient_id}")
    page = client.get(f"/patient/documents/{cda.id}")
    assert page.status_code == 200 and '<article class="cda">' in page.text and "<ClinicalDocument" not in page.text
    assert [e.action for e in last_entries(rt, cda.patient_id, 2)] == ["read_content", "read_metadata"]
