"""seal at rest: documents' and waiting items' titles, contacts, messages' addresses, care lines' acts

Existing values are sealed here, in the migration's transaction, with the master keys that
`dmp db upgrade` (and every embedded start) hands to Alembic: under the record key for what belongs
to a record, a batch key for waiting items, a contact's own key for a professional
(pipeline/core/sealedfields.py). Without keys the migration raises KeysRequired if there is anything to
seal, and nothing is applied. Final items' titles are dropped (their documents keep them). Titles
of documents whose record key was destroyed are dropped: their record is gone. Care lines' content
hashes become keyed by the record key; a downgrade cannot un-key them (an old line sent again after
a downgrade is then reported `duplicate_line`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from pipeline.core.keys import KeyProvider, WrappedKey, new_key
from pipeline.core.sealedfields import (
    DETAILS,
    LineSealer,
    address_context,
    batch_key_context,
    contact_context,
    contact_key_context,
    document_title_context,
    item_title_context,
    open_text,
    seal_text,
)
from pipeline.index.db import KeysRequired
from pipeline.index.recordkeys import record_context

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

AnyRow = sa.Row[*tuple[Any, ...]]  # the tables are this revision's own, not the models
Values = dict[str, Any]  # new column values by name
CHUNK = 1000
FINAL = ("indexed", "rejected")
# (table, clear column, sealed column)
SEALED = (
    ("documents", "title", "title_sealed"),
    ("batch_items", "title", "title_sealed"),
    ("contacts", "email", "email_sealed"),
    ("contacts", "phone", "phone_sealed"),
    ("notifications", "address", "address_sealed"),
)
CLEAR_TYPES = {"title": sa.Text(), "email": sa.String(254), "phone": sa.String(16), "address": sa.String(254)}
CARE_TYPES = {"act_code": sa.String(32), "act_label": sa.Text(), "professional_id": sa.String(64), "professional_name": sa.Text(),
              "profession": sa.String(64)}  # fmt: skip
KEY_COLUMNS = ("batches", "contacts")  # master_key_id + wrapped_key: keys wrapped directly by a master key

patients = sa.table("patients", sa.column("id"))
record_keys = sa.table("record_keys", sa.column("id"), sa.column("patient_id"), sa.column("master_key_id"), sa.column("wrapped"))
batches = sa.table("batches", sa.column("id"), sa.column("master_key_id"), sa.column("wrapped_key"))
contacts = sa.table(
    "contacts", sa.column("id"), sa.column("email"), sa.column("phone"), sa.column("email_sealed"), sa.column("phone_sealed"),
    sa.column("master_key_id"), sa.column("wrapped_key"),
)  # fmt: skip
documents = sa.table(
    "documents", sa.column("id"), sa.column("patient_id"), sa.column("record_key_id"), sa.column("title"), sa.column("title_sealed")
)
batch_items = sa.table(
    "batch_items", sa.column("id"), sa.column("batch_id"), sa.column("state"), sa.column("title"), sa.column("title_sealed")
)
notifications = sa.table("notifications", sa.column("id"), sa.column("recipient_id"), sa.column("address"), sa.column("address_sealed"))
care_events = sa.table(
    "care_events", sa.column("id"), sa.column("source"), sa.column("line_id"), sa.column("patient_id"), sa.column("content_hash"),
    sa.column("details_sealed"), *(sa.column(name) for name in DETAILS),
)  # fmt: skip


class _Keys:
    """The keys rows are sealed under, unwrapped (or made) once each."""

    def __init__(self, bind: sa.Connection, provider: KeyProvider | None) -> None:
        self.bind, self.provider = bind, provider
        self._record: dict[str, bytes | None] = {}
        self._batch: dict[str, bytes] = {}
        self._contact: dict[str, bytes | None] = {}

    def _keys(self) -> KeyProvider:
        if self.provider is None:
            raise KeysRequired(
                "migration 0007 seals existing titles and addresses under the record keys: run `dmp db upgrade`"
                " where the key file (DMP_KEY_FILE) and DMP_KMS_KEY_ID, if used, are set as for the workers"
            )
        return self.provider

    def record(self, patient_id: str, create: bool) -> bytes | None:
        """The patient's record key; None if destroyed (or absent and not `create`)."""
        if patient_id not in self._record:
            row = self.bind.execute(sa.select(record_keys).where(record_keys.c.patient_id == patient_id)).one_or_none()
            if row is not None and row.wrapped is not None:
                wrapped = WrappedKey(row.master_key_id, row.wrapped)
                self._record[patient_id] = self._keys().unwrap(wrapped, record_context(row.id, patient_id))
            elif row is None and create:
                key, key_id = new_key(), str(uuid.uuid4())
                wrapped = self._keys().wrap(key, record_context(key_id, patient_id))
                values = {"id": key_id, "patient_id": patient_id, "master_key_id": wrapped.key_id, "wrapped": wrapped.blob}
                self.bind.execute(sa.insert(record_keys).values(**values))
                self._record[patient_id] = key
            elif row is not None:
                self._record[patient_id] = None  # destroyed: what it sealed is gone with the record
            else:
                return None
        return self._record[patient_id]

    def batch(self, batch_id: str) -> bytes:
        if batch_id not in self._batch:
            row = self.bind.execute(sa.select(batches).where(batches.c.id == batch_id)).one()
            if row.wrapped_key is not None:
                self._batch[batch_id] = self._keys().unwrap(WrappedKey(row.master_key_id, row.wrapped_key), batch_key_context(batch_id))
            else:
                key = new_key()
                wrapped = self._keys().wrap(key, batch_key_context(batch_id))
                self.bind.execute(
                    sa.update(batches).where(batches.c.id == batch_id).values(master_key_id=wrapped.key_id, wrapped_key=wrapped.blob)
                )
                self._batch[batch_id] = key
        return self._batch[batch_id]

    def contact(self, person_id: str, create: bool) -> bytes | None:
        """A patient's record key, or a professional's own contact key (made, with its row, if `create`)."""
        if person_id not in self._contact:
            if self.bind.execute(sa.select(patients.c.id).where(patients.c.id == person_id)).first() is not None:
                return self.record(person_id, create)
            row = self.bind.execute(sa.select(contacts).where(contacts.c.id == person_id)).one_or_none()
            if row is not None and row.wrapped_key is not None:
                wrapped = WrappedKey(row.master_key_id, row.wrapped_key)
                self._contact[person_id] = self._keys().unwrap(wrapped, contact_key_context(person_id))
            elif create:
                key = new_key()
                wrapped = self._keys().wrap(key, contact_key_context(person_id))
                values = {"master_key_id": wrapped.key_id, "wrapped_key": wrapped.blob}
                if row is None:
                    self.bind.execute(sa.insert(contacts).values(id=person_id, **values))
                else:
                    self.bind.execute(sa.update(contacts).where(contacts.c.id == person_id).values(**values))
                self._contact[person_id] = key
            else:
                return None
        return self._contact[person_id]


def _rows(bind: sa.Connection, table: sa.TableClause, where: sa.ColumnElement[bool]) -> Iterator[AnyRow]:
    """Every row of `table` matching `where`, by id, CHUNK rows per round trip (memory stays flat)."""
    last = None
    while True:
        after = table.c.id > last if last is not None else sa.true()
        rows = bind.execute(sa.select(table).where(where, after).order_by(table.c.id).limit(CHUNK)).all()
        yield from rows
        if len(rows) < CHUNK:
            return
        last = rows[-1].id


def _update(bind: sa.Connection, table: sa.TableClause, changes: list[Values]) -> None:
    if changes:
        names = [name for name in changes[0] if name != "row_id"]
        values: dict[str, sa.BindParameter[Any]] = {name.removeprefix("new_"): sa.bindparam(name) for name in names}
        bind.execute(sa.update(table).where(table.c.id == sa.bindparam("row_id")).values(**values), changes)


def _changes(rows: Iterator[AnyRow], change: Callable[[AnyRow], Values]) -> Iterator[list[Values]]:
    batch: list[Values] = []
    for row in rows:
        values = change(row)
        batch.append({"row_id": row.id} | {f"new_{name}": value for name, value in values.items()})
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


Work = list[tuple[sa.TableClause, sa.ColumnElement[bool], Callable[[AnyRow], Values]]]


def _sealing(keys: _Keys) -> Work:
    """(table, rows to change, their new values) to seal the clear columns."""

    def document(row: AnyRow) -> Values:
        key = keys.record(row.patient_id, create=False)
        return {"title_sealed": seal_text(key, row.title, document_title_context(row.id, row.patient_id)) if key else None}

    def item(row: AnyRow) -> Values:
        return {"title_sealed": seal_text(keys.batch(row.batch_id), row.title, item_title_context(row.id))}

    def contact(row: AnyRow) -> Values:
        key = keys.contact(row.id, create=True)
        return {
            "email_sealed": seal_text(key, row.email, contact_context(row.id, "email")) if key else None,
            "phone_sealed": seal_text(key, row.phone, contact_context(row.id, "phone")) if key else None,
        }

    def notification(row: AnyRow) -> Values:
        key = keys.contact(row.recipient_id, create=True)
        return {"address_sealed": seal_text(key, row.address, address_context(row.id, row.recipient_id)) if key else None}

    def care(row: AnyRow) -> Values:
        key = keys.record(row.patient_id, create=True)
        if key is None:  # its record is destroyed: the line goes with it
            return {"details_sealed": None, "content_hash": row.content_hash}
        sealer = LineSealer(key)
        return {
            "details_sealed": sealer.seal(row.source, row.line_id, row.patient_id, [getattr(row, name) for name in DETAILS]),
            "content_hash": sealer.line_hash(row.content_hash),
        }

    return [
        (documents, documents.c.title.is_not(None), document),
        (batch_items, batch_items.c.title.is_not(None) & batch_items.c.state.not_in(FINAL), item),
        (contacts, contacts.c.email.is_not(None) | contacts.c.phone.is_not(None), contact),
        (notifications, notifications.c.address.is_not(None), notification),
        (care_events, care_events.c.act_code.is_not(None), care),
    ]


def _opening(keys: _Keys) -> Work:
    """(table, rows to change, their new values) to restore the clear columns."""

    def document(row: AnyRow) -> Values:
        key = keys.record(row.patient_id, create=False)
        return {"title": open_text(key, row.title_sealed, document_title_context(row.id, row.patient_id)) if key else None}

    def item(row: AnyRow) -> Values:
        return {"title": open_text(keys.batch(row.batch_id), row.title_sealed, item_title_context(row.id))}

    def contact(row: AnyRow) -> Values:
        key = keys.contact(row.id, create=False)
        return {
            "email": open_text(key, row.email_sealed, contact_context(row.id, "email")) if key else None,
            "phone": open_text(key, row.phone_sealed, contact_context(row.id, "phone")) if key else None,
        }

    def notification(row: AnyRow) -> Values:
        key = keys.contact(row.recipient_id, create=False)
        return {"address": open_text(key, row.address_sealed, address_context(row.id, row.recipient_id)) if key else None}

    def care(row: AnyRow) -> Values:
        key = keys.record(row.patient_id, create=False)
        details = LineSealer(key).open(row.source, row.line_id, row.patient_id, row.details_sealed) if key else (None,) * len(DETAILS)
        return dict(zip(DETAILS, details, strict=True))

    return [
        (documents, documents.c.title_sealed.is_not(None), document),
        (batch_items, batch_items.c.title_sealed.is_not(None), item),
        (contacts, contacts.c.email_sealed.is_not(None) | contacts.c.phone_sealed.is_not(None), contact),
        (notifications, notifications.c.address_sealed.is_not(None), notification),
        (care_events, care_events.c.details_sealed.is_not(None), care),
    ]


def _require_keys(keys: _Keys, work: Work) -> None:
    """Refuse before any change when rows need keys and none were given: SQLite commits each ALTER TABLE
    at once, so a refusal halfway would leave the schema half-changed."""
    if keys.provider is None and any(keys.bind.execute(sa.select(table.c.id).where(where).limit(1)).first() for table, where, _ in work):
        keys._keys()  # raises KeysRequired


def _run(keys: _Keys, work: Work) -> None:
    for table, where, change in work:
        for changes in _changes(_rows(keys.bind, table, where), change):
            _update(keys.bind, table, changes)


def upgrade() -> None:
    keys = _Keys(op.get_bind(), context.config.attributes.get("keys"))
    work = _sealing(keys)
    _require_keys(keys, work)
    for table, _, sealed in SEALED:
        op.add_column(table, sa.Column(sealed, sa.LargeBinary(), nullable=True))
    for table in KEY_COLUMNS:
        op.add_column(table, sa.Column("master_key_id", sa.String(length=256), nullable=True))
        op.add_column(table, sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
    op.add_column("care_events", sa.Column("details_sealed", sa.LargeBinary(), nullable=True))
    _run(keys, work)
    for table, clear, _ in SEALED:
        op.drop_column(table, clear)
    for name in DETAILS:
        op.drop_column("care_events", name)


def downgrade() -> None:
    keys = _Keys(op.get_bind(), context.config.attributes.get("keys"))
    work = _opening(keys)
    _require_keys(keys, work)
    for table, clear, _ in SEALED:
        op.add_column(table, sa.Column(clear, CLEAR_TYPES[clear], nullable=True))
    for name in DETAILS:
        op.add_column("care_events", sa.Column(name, CARE_TYPES[name], nullable=True))
    _run(keys, work)
    op.drop_column("care_events", "details_sealed")
    for table, _, sealed in SEALED:
        op.drop_column(table, sealed)
    for table in KEY_COLUMNS:
        op.drop_column(table, "wrapped_key")
        op.drop_column(table, "master_key_id")
