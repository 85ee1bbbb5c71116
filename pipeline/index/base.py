"""What every index table is built on: the declarative base and its naming convention, ids, the UTC moment type,
and the helpers that read a model's table (pipeline/index/models.py holds the tables)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection

from sqlalchemy import DateTime, MetaData, String, Table, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

from pipeline.core.clock import as_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def table_of(model: type[Base]) -> Table:
    """The model's table, for Core statements (`__table__` is typed as any FROM clause)."""
    return Base.metadata.tables[model.__tablename__]


def text_widths(model: type[Base], names: Collection[str]) -> dict[str, int]:
    """The declared length of each of `names` among `model`'s string columns (those with one)."""
    return {
        column.name: column.type.length
        for column in model.__table__.columns
        if column.name in names and isinstance(column.type, String) and column.type.length
    }


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A moment, always read back timezone-aware in UTC, on SQLite (which keeps no zone and returns naive
    times) as on PostgreSQL (which returns them in the session's zone). Written in UTC too: SQLite
    would drop any other offset and shift the moment. A naive value is taken as UTC (what SQLite's
    CURRENT_TIMESTAMP stores). So every time the API and the CLI print is RFC 3339 with its offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UtcDateTime()}
