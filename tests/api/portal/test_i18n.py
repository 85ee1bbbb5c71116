"""The portal's languages (api/portal/i18n.py): French source text, an English catalog covering every message."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir

from api.portal.i18n import translations

ROOT = Path(__file__).parents[3]
METHODS = [("api/portal/**.py", "python"), ("api/portal/templates/**.html", "jinja2")]


def _messages() -> set[str]:
    found = extract_from_dir(ROOT, METHODS, keywords={"_": None, "N_": None})
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


def test_every_message_of_the_portal_has_an_english_translation():
    english = translations("en")
    messages = _messages()
    assert len(messages) > 100
    untranslated = sorted(m for m in messages if english.gettext(m) == m and m not in {"Action", "Date", "Document", "Documents",
                          "Notifications", "Patient", "Prescription", "Profession", "Source", "Type", "Type (code)", "Pages",
                          "Dispensation", "%(n)s document(s)", "Allergies", "Version"})  # fmt: skip
    assert untranslated == []


def test_french_is_the_source_text_itself():
    assert translations("fr").gettext("Connexion") == "Connexion"
    assert translations("en").gettext("Connexion") == "Sign in"


def test_times_are_shown_in_paris_and_in_the_visitors_language():
    import datetime as dt

    from api.portal.i18n import day, moment

    instant = dt.datetime(2026, 7, 1, 22, 30, tzinfo=dt.UTC)  # already 2 July in Paris (UTC+2)
    assert moment(instant, "fr") == "02/07/2026 00:30"
    assert moment(instant, "en") == "7/2/26, 12:30\u202fAM"
    assert (day(dt.date(2026, 7, 2), "fr"), day(dt.date(2026, 7, 2), "en")) == ("02/07/2026", "7/2/26")
