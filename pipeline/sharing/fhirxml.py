"""FHIR XML, the other encoding MHD actors support: resources written by the model library (lxml), and an ITI-65
Bundle sent as XML read into the JSON the intake reads (pipeline/sharing/provide.py checks it there as any Bundle).

A Bundle in XML is hostile input like any other: a DOCTYPE, an entity or an external reference is refused by
defusedxml before the model library's lxml parser sees the bytes, and that parser is itself built to resolve
no entity, load no DTD and fetch nothing.
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from lxml import etree
from pydantic import ValidationError

from pipeline.sharing.fhirjson import dumps
from pipeline.sharing.provide import SubmissionRefused


def xml_bytes(resource: Resource) -> bytes:
    """The resource in FHIR XML, with its XML declaration (UTF-8)."""
    written: bytes | str = resource.model_dump_xml()  # bytes, whatever its annotation says
    return written if isinstance(written, bytes) else written.encode()


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False)


def bundle_json_from_xml(data: bytes) -> bytes:
    """An ITI-65 Bundle sent in FHIR XML, as FHIR JSON; SubmissionRefused `bundle_invalid` if it is not well-formed,
    declares a DTD or an entity, or is not a FHIR R4 Bundle."""
    try:
        fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as failure:
        raise SubmissionRefused(
            "bundle_invalid", f"Not well-formed XML, or it declares a DTD or entities ({type(failure).__name__})."
        ) from None
    try:
        bundle = Bundle.model_validate_xml(data, xmlparser=_parser())
    # The XML loader's own failures on shapes it does not expect are as many ways of not being a Bundle.
    except (ValidationError, ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, etree.LxmlError) as failure:
        raise SubmissionRefused("bundle_invalid", f"Not a FHIR R4 Bundle ({type(failure).__name__}).") from None
    return dumps(bundle)
