"""Row-by-row updates sent as one statement: on PostgreSQL, `UPDATE … FROM unnest(arrays)`.

An executemany is pipelined by psycopg (one round trip) but is still one statement per row for the
server to parse, plan and execute: for the few rows of a micro-batch (a pack's items) that was most of
PostgreSQL's CPU per document. The rows' values go instead as one array per column, and the server
joins them to the table in one statement, whose text does not depend on the number of rows (one cached
form, one prepared plan). SQLite has no arrays: there, the same rows go as an executemany.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, column, func, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

RowValues = dict[str, Any]  # a row's values, by name


def update_rows(
    session: Session,
    table: Table,
    rows: Sequence[RowValues],
    columns: dict[str, str],
    common: RowValues | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> None:
    """For each of `rows`, update the row of `table` whose `id` is `row["row_id"]`: `columns` maps each column
    set to the name of its value in the rows (never a column's name: SQLAlchemy keeps those for itself);
    `common` are values every row gets; `where` adds conditions (a row that fails them is left as it is).
    Every row has the same names."""
    if not rows:
        return
    common = common or {}
    if session.get_bind().dialect.name != "postgresql":
        statement = update(table).where(table.c.id == bindparam("row_id"), *where)
        session.execute(statement.values({name: bindparam(value) for name, value in columns.items()} | common), list(rows))
        return
    # One array per value, typed as the column it goes to (the key's as the id's): the same bind processing as a plain UPDATE.
    types = {"row_id": table.c.id.type} | {value: table.c[name].type for name, value in columns.items()}
    arrays = [bindparam(f"rows_{name}", [row[name] for row in rows], type_=postgresql.ARRAY(kind)) for name, kind in types.items()]
    given = func.unnest(*arrays).table_valued(*(column(name, kind) for name, kind in types.items())).render_derived("given")
    statement = update(table).where(table.c.id == given.c.row_id, *where)
    session.execute(statement.values({name: given.c[value] for name, value in columns.items()} | common))
