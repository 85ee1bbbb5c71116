"""A CDA document as a page shows it (api/portal/cda.py): text only, nothing of its markup."""

from __future__ import annotations

from api.portal.cda import render_cda

CDA = b"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20250314"/>
  <component><structuredBody><component><section>
    <title>Conclusion</title>
    <text><paragraph>Tout va <content styleCode="Bold">bien</content>.</paragraph>
      <paragraph>&lt;script&gt;alert(1)&lt;/script&gt;</paragraph></text>
  </section></component></structuredBody></component>
</ClinicalDocument>"""


def test_a_cda_document_gives_its_title_date_and_section_text():
    view = render_cda(CDA)
    assert view is not None
    assert (view.title, view.effective) == ("Compte rendu de consultation", "14/03/2025")
    assert view.sections[0].title == "Conclusion"
    assert view.sections[0].paragraphs[0] == "Tout va bien ."


def test_markup_in_a_cda_narrative_stays_text_for_the_page_to_escape():
    view = render_cda(CDA)
    assert view is not None and view.sections[0].paragraphs[1] == "<script>alert(1)</script>"  # escaped by the template


def test_a_cda_with_a_dtd_or_entities_is_not_rendered():
    entities = b'<!DOCTYPE x [<!ENTITY e "boom">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&e;</title></ClinicalDocument>'
    assert render_cda(entities) is None
    assert render_cda(b"<not-xml") is None
