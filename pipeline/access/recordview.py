"""The record and its documents as the access policy sees them, read from the index.

`decide` reads plain values (`Record`, `DocumentView`); these queries fetch them, and no more, in one round
trip each. Only live documents (`Document.live`) are part of a record.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

from sqlalchemy import Date, Select, Table, and_, bindparam, exists, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from pipeline.access.audit import ChainHead, chain_head_columns, chain_lock_params, head_from_rows
from pipeline.access.membership import Grant, GrantBasis
from pipeline.access.policy import DocumentView, Record
from pipeline.index import direct
from pipeline.index.models import Document, Patient, RecordRelation
from pipeline.index.states import Relation

if TYPE_CHECKING:
    from sqlalchemy import Row

    # A narrow row of POLICY_COLUMNS (Row is variadic from SQLAlchemy 2.1: spelled for the type checker only).
    PolicyColumnsRow: TypeAlias = Row[*tuple[Any, ...]]
    # A document as the policy reads it: a whole Document, or a narrow row.
    PolicyRow: TypeAlias = Document | PolicyColumnsRow


_PATIENTS = cast(Table, Patient.__table__)
_RELATIONS = cast(Table, RecordRelation.__table__)
_DOCUMENTS = cast(Table, Document.__table__)
_RECORD_COLUMNS = (
    _PATIENTS.c.id,
    _PATIENTS.c.status,
    _PATIENTS.c.is_minor,
    _PATIENTS.c.attending_physician_id,
    _PATIENTS.c.emergency_opposed,
    _RELATIONS.c.actor_id,
    _RELATIONS.c.relation,
    _RELATIONS.c.until,
)
# The relations that put someone in the care team, and may end.
_GRANTS = {Relation.AUTHORIZED: GrantBasis.AUTHORIZED, Relation.DECLARED_CONSENT: GrantBasis.DECLARED_CONSENT,
           Relation.FACILITY: GrantBasis.FACILITY}  # fmt: skip
_RECORD_FROM = _PATIENTS.outerjoin(_RELATIONS, _RELATIONS.c.patient_id == _PATIENTS.c.id)
# The documents probed for authorship: an alias, so that probe never correlates with the document read alongside.
_AUTHORED = aliased(Document, name="authored_documents")


@functools.cache
def record_statement(lock_chain: bool, for_actor: bool, with_document: bool) -> Select[Any]:
    """The one statement that reads a record for the policy, built once per shape (this runs on every access),
    the values bound at execution: the patient and its relations (a row per relation), and as it is asked,
    whether `actor_id` authored a live document of the record (ix_documents_patient_author, evaluated once),
    the record's live document `document_id` (a whole Document, None when there is no such live document of
    this patient), and the record's audit chain lock tried and the chain's head (`pipeline.access.audit.
    chain_head_columns`, when the patient exists)."""
    columns: list[Any] = [*_RECORD_COLUMNS]
    if for_actor:
        by_actor = (_AUTHORED.patient_id == bindparam("patient_id"), _AUTHORED.author_id == bindparam("actor_id"), _AUTHORED.live)
        columns.append(exists().where(*by_actor).label("authored"))
    if lock_chain:
        columns.extend(chain_head_columns(bindparam("patient_id")))
    source = _RECORD_FROM
    if with_document:
        # Joined on the patient too: another patient's document id finds nothing here, as a missing one does.
        document = and_(_DOCUMENTS.c.id == bindparam("document_id"), _DOCUMENTS.c.patient_id == _PATIENTS.c.id, Document.live)
        source, columns = source.outerjoin(_DOCUMENTS, document), [Document, *columns]
    return select(*columns).select_from(source).where(_PATIENTS.c.id == bindparam("patient_id"))


class FoundRecord(NamedTuple):
    """What `read_record` read: the record, the document asked for (None: none asked, or no such live document of
    this patient), and the record's audit chain head if the statement took the chain's lock without waiting."""

    record: Record
    document: Document | None
    chain_head: ChainHead | None


def load_record(session: Session, patient_id: str, *, now: dt.datetime | None = None, for_actor: str | None = None) -> Record | None:
    """The record as the policy sees it at `now` (the clock by default), or None when there is no such patient.

    Authorship is looked up for `for_actor` only (the one actor a request decides for): `Record.authors` holds them
    if they authored a live document of the record, one index probe rather than every author of a large record.
    One round trip (see `read_record`).
    """
    found = read_record(session, patient_id, now=now, for_actor=for_actor)
    return found.record if found is not None else None


def read_record(
    session: Session,
    patient_id: str,
    *,
    now: dt.datetime | None = None,
    for_actor: str | None = None,
    lock_chain: bool = False,
    document_id: str | None = None,
) -> FoundRecord | None:
    """`load_record`, and with `document_id` the record's live document of that id (None: no such document,
    another patient's, or shredded), all in one round trip; None when there is no such patient.
    `lock_chain` (PostgreSQL): the same statement tries the record's audit chain lock and reads the chain's head
    (`pipeline.access.audit.chain_head_columns`), saving the round trip of the head's statement of its own.

    The document is read with the record, not after a record-level decision: the caller decides on the record
    first and looks at the document only if that allows it, so what an actor is told depends on the decisions
    alone, and a denial costs the same statement whether or not the document exists."""
    params: dict[str, Any] = {"patient_id": patient_id}
    if for_actor is not None:
        params["actor_id"] = for_actor
    if lock_chain:
        params |= chain_lock_params(patient_id)
    if document_id is not None:
        params["document_id"] = document_id
    statement = record_statement(lock_chain, for_actor is not None, document_id is not None)
    rows = direct.rows(session, statement, params)  # every request's first statement: below the Session when it can be
    if not rows:
        return None
    relations: dict[str, set[str]] = {}
    grants: list[Grant] = []
    for row in rows:
        if row.relation is None:
            continue
        if row.relation in _GRANTS and row.until is not None:
            grants.append(Grant(row.actor_id, _GRANTS[row.relation], row.until))  # ends: decided at `as_of`
        elif row.relation in _GRANTS and row.relation != Relation.AUTHORIZED:
            grants.append(Grant(row.actor_id, _GRANTS[row.relation]))
        else:
            relations.setdefault(row.relation, set()).add(row.actor_id)
    patient = rows[0]
    authors = frozenset({for_actor}) if for_actor is not None and patient.authored else frozenset()
    record = Record(
        patient_id=patient.id,
        status=patient.status,
        is_minor=patient.is_minor,
        representatives=frozenset(relations.get("representative", ())),
        care_team=frozenset(relations.get("authorized", ())),
        blocked=frozenset(relations.get("blocked", ())),
        attending_physician=patient.attending_physician_id,
        emergency_opposed=patient.emergency_opposed,
        occupational_consent=frozenset(relations.get("occupational_consent", ())),
        grants=tuple(sorted(grants, key=lambda grant: (grant.basis, grant.subject))),
        authors=authors,
        as_of=now or dt.datetime.now(dt.UTC),
    )
    head = head_from_rows(patient_id, rows) if lock_chain else None
    return FoundRecord(record, patient.Document if document_id is not None else None, head)


def record_authors(session: Session, patient_id: str) -> list[str]:
    """Every professional who authored a live document of the record, sorted."""
    query = select(Document.author_id).where(Document.patient_id == patient_id, Document.live, Document.author_id.is_not(None))
    return sorted({author for author in session.scalars(query.distinct()) if author})


def patient_id_for_ins(session: Session, ins: str) -> str | None:
    """The id of the record keyed by this INS (a normalized, checked NIR), or None."""
    return session.scalar(select(Patient.id).where(Patient.ins == ins))


# The index columns the policy reads, in the order of DocumentView's fields after `id`. The table's own columns,
# not the model's attributes: statements of them stay Core (no ORM compile step on each execution).
POLICY_COLUMNS = (
    _DOCUMENTS.c.id,
    _DOCUMENTS.c.class_code,
    _DOCUMENTS.c.type_code,
    _DOCUMENTS.c.masked,
    _DOCUMENTS.c.hidden_from_patient_until,
    _DOCUMENTS.c.created_at,
    _DOCUMENTS.c.author_id,
    _DOCUMENTS.c.source,
    _DOCUMENTS.c.hidden_from_representatives,
)
# What the policy knows of a document besides its id, in the order of DocumentView's fields.
PolicyFields = tuple[str, str, bool, dt.date | None, dt.date | None, str | None, str, bool]


class _utc_date(FunctionElement[dt.date]):
    """The UTC calendar date of a UtcDateTime column: what `.date()` gives of the moment Python reads back."""

    type = Date()
    inherit_cache = True
    name = "utc_date"


@compiles(_utc_date, "postgresql")
def _utc_date_postgresql(element: _utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


@compiles(_utc_date, "sqlite")
def _utc_date_sqlite(element: _utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"  # stored as UTC text: its date part


# `policy_fields` as SQL expressions, in the same order: the policy's inputs computed in the query, so that
# documents alike in all of them are counted, and decided, as one group.
POLICY_FIELD_COLUMNS = (
    _DOCUMENTS.c.class_code,
    _DOCUMENTS.c.type_code,
    _DOCUMENTS.c.masked,
    _DOCUMENTS.c.hidden_from_patient_until,
    _utc_date(_DOCUMENTS.c.created_at),
    _DOCUMENTS.c.author_id,
    _DOCUMENTS.c.source,
    _DOCUMENTS.c.hidden_from_representatives,
)


def policy_fields(document: PolicyRow) -> PolicyFields:
    """What the policy knows of a document besides its id (a Document or a row of POLICY_COLUMNS)."""
    return (
        document.class_code,
        document.type_code,
        document.masked,
        document.hidden_from_patient_until,
        document.created_at.date() if document.created_at else None,
        document.author_id,
        document.source,  # the depositing facility: its professionals still see a masked document
        document.hidden_from_representatives,
    )


def document_view(document: PolicyRow) -> DocumentView:
    return DocumentView(document.id, *policy_fields(document))


def all_policy_rows(session: Session, patient_id: str) -> Sequence[PolicyColumnsRow]:
    """Every document of the record as narrow rows of POLICY_COLUMNS, shredded ones included: the access log
    names documents that may be gone since, and hides them by the same rules."""
    return session.execute(select(*POLICY_COLUMNS).where(Document.patient_id == patient_id)).all()
