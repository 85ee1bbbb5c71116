"""Identifiers: the national health identifier (INS, its NIR format and key), and the shape any
identifier from outside (a token's subject, an RPPS number in a path) must have.

The NIR is 13 characters (sex, year, month, département, commune, order) followed by a
2-digit key equal to 97 - (the 13 digits mod 97). Corsica writes 2A / 2B in the
département; for the key they are read as 19 / 18.
"""

from __future__ import annotations

import functools
import re

INS_OID_NIR = "1.2.250.1.213.1.4.8"
INS_OID_NIA = "1.2.250.1.213.1.4.9"
INS_OID_TEST = "1.2.250.1.213.1.4.10"
INS_OIDS = frozenset({INS_OID_NIR, INS_OID_NIA, INS_OID_TEST})

# The id of a person acting on a record (a token's subject: patient id, RPPS number, a representative's
# id): the width of the index columns that hold it (audit_entries, record_relations, contacts, patients).
MAX_ACTOR_ID = 128

_NIR = re.compile(r"^([12378])(\d{2})(\d{2})(\d{2}|2A|2B)(\d{3})(\d{3})(\d{2})$")


def normalize_nir(value: str) -> str:
    """Upper-case and drop the spaces people type between NIR groups."""
    return re.sub(r"[\s.]", "", value or "").upper()


def _numeric_body(body13: str) -> int:
    # Corsican départements are read as 19 (2A) and 18 (2B) for the key only.
    return int(body13.replace("2A", "19").replace("2B", "18"))


def nir_key(body13: str) -> int:
    """The 2-digit control key of a 13-character NIR body."""
    return 97 - (_numeric_body(body13) % 97)


def is_valid_nir(value: str) -> bool:
    """True when `value` is a well-formed 15-character NIR whose key matches."""
    nir = normalize_nir(value)
    match = _NIR.match(nir)
    if not match:
        return False
    month = int(match.group(3))
    # 01-12, plus 20 and 30-42 (unknown or provisional months) and 50+ per INSEE usage.
    if month == 0 or (12 < month < 20) or (20 < month < 30) or (42 < month < 50) or month > 99:
        return False
    return nir_key(nir[:13]) == int(nir[13:])


class InsError(ValueError):
    """An INS that cannot name a record: `code` is `invalid_ins` (malformed, wrong key) or `unknown_ins_oid`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_ins(value: str, oid: str | None = None) -> str:
    """The normalized NIR of an INS given with one of INS_OIDS (the NIR's by default: NIA and test identities
    have the same format and key). Raises InsError."""
    if oid is not None and oid not in INS_OIDS:
        raise InsError("unknown_ins_oid", f"the INS OID must be one of {', '.join(sorted(INS_OIDS))}")
    nir = normalize_nir(value)
    if not is_valid_nir(nir):
        raise InsError("invalid_ins", "the patient INS (NIR) is malformed or its control key is wrong")
    return nir


def with_key(body13: str) -> str:
    """Append the control key to a 13-character NIR body (used to build valid test NIRs)."""
    return f"{body13}{nir_key(body13):02d}"


def identifier_pattern(width: int) -> str:
    """1 to `width` printable ASCII characters, no space at either end: the shape of every identifier
    taken from outside before it reaches the index. One expression for Python and for the OpenAPI
    document (JSON Schema), so the API, its clients and the checks here agree; it also keeps out
    what PostgreSQL refuses in a string (NUL) and what SQLite would store unbounded."""
    if width < 2:
        raise ValueError("width must be at least 2")
    return rf"^[!-~](?:[ -~]{{0,{width - 2}}}[!-~])?$"


def is_identifier(value: object, width: int = MAX_ACTOR_ID) -> bool:
    """Whether `value` is a string of the shape `identifier_pattern(width)` describes."""
    return isinstance(value, str) and _identifier_expression(width).fullmatch(value) is not None


@functools.cache
def _identifier_expression(width: int) -> re.Pattern[str]:
    """`identifier_pattern(width)` compiled once: a token's claims are checked on every request (the pattern
    built anew and looked up in `re`'s cache each time cost about 1% of a short request's CPU)."""
    return re.compile(identifier_pattern(width))
