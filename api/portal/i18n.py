"""The portal's languages: French first (the messages' source text), English from its gettext catalog.

The catalogs are the committed `.po` files (api/portal/locale/LANG/LC_MESSAGES/portal.po), compiled in memory
when the app starts: no compiled `.mo` is committed, none can go stale. `make messages` extracts the
strings again (pybabel, babel.cfg) and merges them into the catalogs.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import io
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from starlette.requests import Request

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "fr"
LANGUAGES = ("fr", "en")
LANG_COOKIE = "dmp_lang"
PARIS = ZoneInfo("Europe/Paris")  # the record's calendar (docs/domain.md): times are shown there


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of `language` (French: the source text itself)."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / "portal.po"
    if language == DEFAULT or not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def language_of(request: Request) -> str:
    """`?lang=`, then the language cookie, then the browser's Accept-Language, then French."""
    for chosen in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if chosen in LANGUAGES:
            return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return DEFAULT


def day(value: dt.date, language: str) -> str:
    """A calendar date in the language's short form (27/11/2026, 11/27/26)."""
    return format_date(value, format="short" if language != DEFAULT else "dd/MM/yyyy", locale=language)


def moment(value: dt.datetime, language: str) -> str:
    """An instant as a date and time in Paris, in the language's form."""
    return format_datetime(value, format="short", tzinfo=PARIS, locale=language)
