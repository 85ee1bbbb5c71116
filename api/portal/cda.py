"""A CDA R2 document as plain text blocks for a page: title, date, sections (headings and their narrative text).

Only text is taken (the page escapes it): no markup, link, style or reference of the document reaches the
browser. Parsed like at intake: no DTD, no entities, nothing external.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

NS = {"h": "urn:hl7-org:v3"}
MAX_SECTIONS = 200


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: list[str]


@dataclass(frozen=True)
class CdaView:
    title: str | None
    effective: str | None
    sections: list[Section] = field(default_factory=list)


def _text(element: Element | None) -> list[str]:
    """The narrative as paragraphs: one per child block, whitespace folded."""
    if element is None:
        return []
    blocks = list(element) or [element]
    out = [" ".join(" ".join(block.itertext()).split()) for block in blocks]
    lead = " ".join((element.text or "").split())
    return [p for p in ([lead] if lead and list(element) else []) + out if p]


def render_cda(data: bytes) -> CdaView | None:
    """The readable parts of a CDA document; None when it cannot be read safely (shown as a download instead)."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, UnicodeError, ValueError, LookupError):
        return None
    effective = root.find("h:effectiveTime", NS)
    value = effective.get("value") if effective is not None else None
    date = f"{value[6:8]}/{value[4:6]}/{value[:4]}" if value and len(value) >= 8 and value[:8].isdigit() else None
    sections = [
        Section(" ".join((s.findtext("h:title", default="", namespaces=NS) or "").split()), _text(s.find("h:text", NS)))
        for s in root.iterfind(".//h:section", NS)
    ][:MAX_SECTIONS]
    return CdaView(root.findtext("h:title", default=None, namespaces=NS), date, sections)
