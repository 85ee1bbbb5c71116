"""The portal in a real browser (headless Chromium): the patient's and the professionals' story of the issue,
axe-core on every page, and nothing loaded from another host."""

from __future__ import annotations

import re
import time

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import Watched, screenshot, sign_in

pytestmark = pytest.mark.slow

PRO, EMERGENCY = "10000000002", "10000000003"  # the demo's blocked and emergency physicians (api/demo.py)
SERIOUS = {"serious", "critical"}


def _axe_problems(watched: Watched) -> list[str]:
    results = Axe().run(watched.page)
    assert len(results.response["passes"]) > 10  # axe did run its rules on this page
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in results.response["violations"] if v["impact"] in SERIOUS]


def _row_with(page, text: str):  # type: ignore[no-untyped-def]
    return page.locator("tr", has_text=text)


def test_the_story_of_the_issue(portal, browser):
    """Patient signs in, lists, opens a PDF, masks a document; a professional finds the record by INS and reads;
    the patient blocks them and sees their earlier access; they are refused; another uses break-glass with a
    reason; the patient sees the emergency access in the log and its notification."""
    patient_id = portal.patients[0]
    ins = portal.ins[patient_id]
    me, doctor, urgent = (Watched(browser, portal.base) for _ in range(3))
    p = me.page

    sign_in(me, ins)
    assert p.get_by_role("heading", name="Mon dossier").is_visible()
    screenshot(me, "patient-home")
    p.get_by_role("link", name="Documents", exact=True).click()
    rows = p.locator("tbody tr")
    assert rows.count() == sum(d.patient_id == patient_id for d in portal.documents)
    screenshot(me, "patient-documents")

    pdf = next(d for d in portal.documents if d.patient_id == patient_id and d.mime_type == "application/pdf")
    with p.expect_response(re.compile(rf"/patient/documents/{pdf.id}/content$")) as served:
        p.goto(f"{portal.base}/patient/documents/{pdf.id}")
    assert served.value.status == 200 and served.value.headers["content-type"] == "application/pdf"
    assert p.locator("iframe.pdf").is_visible()
    screenshot(me, "patient-document")
    p.get_by_role("button", name="Masquer ce document").click()
    assert p.get_by_role("button", name="Démasquer ce document").is_visible()

    me.go("/patient/privacy")
    p.get_by_label("Identifiant RPPS du professionnel").fill(PRO)
    p.get_by_role("button", name="Autoriser").click()
    assert p.get_by_text(f"RPPS {PRO}").is_visible()

    # The professional finds the record by INS and reads a document.
    sign_in(doctor, f"RPPS {PRO}")
    d = doctor.page
    d.get_by_label("INS du patient (15 caractères)").fill(ins)
    d.get_by_role("button", name="Rechercher").click()
    screenshot(doctor, "pro-lookup")
    d.get_by_role("link", name="Ouvrir le dossier").click()
    readable = d.locator("tbody tr a")
    assert readable.count() > 0
    readable.first.click()
    assert d.get_by_role("heading", name="Contenu").is_visible()

    # The patient blocks them, and sees their earlier access in the log.
    me.go("/patient/privacy")
    p.get_by_label("Identifiant RPPS du professionnel").fill(PRO)
    p.get_by_role("button", name="Bloquer").click()
    screenshot(me, "patient-privacy")
    me.go("/patient/access-log")
    assert _row_with(p, PRO).filter(has_text="a lu un document").count() >= 1 or _row_with(p, PRO).count() >= 1

    # Refused after the block.
    d.goto(f"{portal.base}/pro/records/{patient_id}")
    assert "bloqué" in d.locator("main").inner_text()

    # Another physician, outside the care team, breaks the glass with a reason.
    sign_in(urgent, f"RPPS {EMERGENCY}")
    u = urgent.page
    urgent.go(f"/pro/records/{patient_id}")
    u.get_by_role("link", name="Accès d'urgence (bris de glace)").click()
    assert "notifié au patient" in u.locator("main").inner_text()
    screenshot(urgent, "pro-break-glass")
    u.get_by_label("Motif (obligatoire)").fill("patient inconscient après un accident")
    u.get_by_role("button", name="J'accède au dossier en urgence").click()
    assert "urgence en cours" in u.locator("main").inner_text()
    u.locator("tbody tr a").first.click()

    # The patient sees the emergency access, standing out, with its reason, and the message sent about it.
    me.go("/patient/access-log")
    emergency_rows = p.locator("tr.emergency")
    assert emergency_rows.count() >= 1 and "patient inconscient après un accident" in emergency_rows.first.inner_text()
    screenshot(me, "patient-access-log")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        me.go("/patient/notifications")
        if "urgence" in p.locator(".messages").inner_text().lower() if p.locator(".messages").count() else False:
            break
        time.sleep(0.5)
    assert "urgence" in p.locator(".messages").inner_text().lower()
    screenshot(me, "patient-notifications")

    for watched in (me, doctor, urgent):
        assert watched.hosts == {portal.base}, watched.hosts  # nothing from another host
        watched.close()


PATIENT_PAGES = ["/patient", "/patient/documents", "/patient/care", "/patient/access-log", "/patient/privacy",
                 "/patient/notifications", "/patient/close", "/patient/contribute", "/patient/profile", "/patient/profile/edit",
                 "/patient/contacts/edit"]  # fmt: skip


def test_axe_finds_no_serious_violation_on_any_page(portal, browser):
    patient_id = portal.patients[1]
    visitor = Watched(browser, portal.base)
    visitor.go("/")
    problems = {"/": _axe_problems(visitor)}
    sign_in(visitor, portal.ins[patient_id])
    document = next(d for d in portal.documents if d.patient_id == patient_id)
    for path in [*PATIENT_PAGES, f"/patient/documents/{document.id}", f"/patient/documents/{document.id}/history"]:
        visitor.go(path)
        problems[path] = _axe_problems(visitor)
    visitor.close()
    pro = Watched(browser, portal.base)
    sign_in(pro, f"RPPS {EMERGENCY}")
    for path in ["/pro", f"/pro/records/{patient_id}", f"/pro/records/{patient_id}/emergency", f"/pro/records/{patient_id}/profile"]:
        pro.go(path)
        problems[path] = _axe_problems(pro)
    pro.go("/pro")
    pro.page.get_by_label("INS du patient (15 caractères)").fill("123")
    pro.page.get_by_role("button", name="Rechercher").click()
    problems["/pro/lookup (invalid)"] = _axe_problems(pro)
    pro.close()
    representative = _representative(portal, browser, patient_id)
    assert representative.page.url.endswith("/patient/records")
    problems["/patient/records"] = _axe_problems(representative)
    representative.close()
    assert {path: found for path, found in problems.items() if found} == {}


def _representative(portal, browser, patient_id: str) -> Watched:  # type: ignore[no-untyped-def]
    """A legal representative of `patient_id` (signed in as the identity provider would: a session of that kind)."""
    from api.portal.sessions import COOKIE
    from pipeline.access.representatives import add_representative
    from pipeline.access.tokens import Claims

    with portal.rt.sessions() as session:
        add_representative(session, portal.ins[patient_id], "REP-BROWSER")
    session_id = portal.app.state.portal_sessions.new(Claims(subject="REP-BROWSER", kind="legal_representative")).id
    visitor = Watched(browser, portal.base)
    visitor.context.add_cookies([{"name": COOKIE, "value": session_id, "url": portal.base}])
    visitor.go("/patient/records")
    return visitor


def test_the_pages_run_no_script_even_one_injected_into_a_document(portal, browser):
    """The policy is enforced by the browser: an inline script in a page would not run."""
    visitor = Watched(browser, portal.base)
    sign_in(visitor, portal.ins[portal.patients[1]])
    violations: list[str] = []
    visitor.page.on("console", lambda message: violations.append(message.text))
    visitor.page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';
                                      document.body.appendChild(s); }""")
    assert visitor.page.evaluate("() => window.ran") is None
    assert any("Content Security Policy" in text for text in violations)
    visitor.close()


def test_a_phone_sized_screen_needs_no_sideways_scrolling(portal, browser):
    visitor = Watched(browser, portal.base, viewport={"width": 360, "height": 740}, is_mobile=True)
    sign_in(visitor, portal.ins[portal.patients[1]])
    for path in PATIENT_PAGES:
        visitor.go(path)
        overflow = visitor.page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, path
    visitor.go("/patient/documents")
    screenshot(visitor, "patient-documents-phone")
    visitor.close()


def test_the_keyboard_reaches_the_skip_link_first_and_the_content_after_it(portal, browser):
    visitor = Watched(browser, portal.base)
    sign_in(visitor, portal.ins[portal.patients[1]])
    visitor.go("/patient/documents")
    visitor.page.keyboard.press("Tab")
    assert visitor.page.evaluate("() => document.activeElement.textContent") == "Aller au contenu"
    visitor.page.keyboard.press("Enter")
    # The fragment navigation completes after the key press returns: wait for it (a wrong target times out).
    visitor.page.wait_for_url(re.compile(r"#main$"), timeout=5000)
    assert visitor.page.url.endswith("#main")
    visitor.close()


def test_a_patient_adds_advance_directives_and_a_medical_profile_through_the_forms(portal, browser, tmp_path):
    """The browser's own multipart form (the token first, then the file) goes through the API's upload."""
    visitor = Watched(browser, portal.base)
    p = visitor.page
    sign_in(visitor, portal.ins[portal.patients[1]])
    p.get_by_role("link", name="Ajouter un document").click()
    (tmp_path / "directives.txt").write_bytes(b"Je refuse tout acharnement therapeutique.\n")
    p.get_by_label("Titre").fill("Mes directives anticipées")
    p.get_by_label("Type de document").select_option("EXPPAT_3")
    p.get_by_label("Fichier (PDF, image, texte)").set_input_files(str(tmp_path / "directives.txt"))
    screenshot(visitor, "patient-contribute")
    p.get_by_role("button", name="Envoyer").click()
    assert "/patient/contributions/" in p.url
    problems = {"status": _axe_problems(visitor)}
    deadline = time.monotonic() + 30
    while not p.get_by_role("link", name="Voir le document").count() and time.monotonic() < deadline:
        time.sleep(0.3)
        p.reload()
    p.get_by_role("link", name="Voir le document").click()
    assert p.get_by_role("heading", name="Mes directives anticipées").is_visible()
    p.get_by_role("link", name="Profil médical", exact=True).click()
    p.get_by_role("link", name="Modifier mon profil médical").click()
    p.get_by_label("Allergies").fill("Pénicilline")
    p.get_by_label("Groupe sanguin").select_option("O-")
    p.get_by_label("Favorable").check()
    p.get_by_role("button", name="Enregistrer").click()
    assert p.get_by_text("Pénicilline").is_visible() and p.get_by_role("status").is_visible()
    screenshot(visitor, "patient-profile")
    assert problems == {"status": []} and visitor.hosts == {portal.base}
    visitor.close()
