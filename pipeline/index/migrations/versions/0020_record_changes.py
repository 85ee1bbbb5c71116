"""Record changes counted: a feed worker re-reads a chunk's records only when one was closed or lost its key

Every feed chunk read its ~8,000 patients and their record keys again (~26 ms of PostgreSQL's CPU and ~25 of the
worker's per chunk), so that a record closed or a key destroyed is seen by the next chunk. One row now counts such
changes, bumped by triggers in the transaction that makes them (a record's status or INS changed, a record key's
wrapped bytes cleared, a patient or key deleted or truncated): a worker keeps the records it read along with the
count it read before them, and reads them again only once the count has moved (pipeline/carehistory/knownrecords.py).
The triggers are PostgreSQL's: SQLite's feed path reads its records every chunk and keeps none.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# A row trigger only where the change is one (a key's rewrap or a patient's other settings move nothing); deletes and
# truncates per statement (retention deletes closed records, which no worker keeps anyway).
_TRIGGERS = (
    ("patients", "AFTER UPDATE OF status, ins",
     "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.ins IS DISTINCT FROM NEW.ins)"),
    ("patients", "AFTER DELETE OR TRUNCATE", "FOR EACH STATEMENT"),
    ("record_keys", "AFTER UPDATE OF wrapped, patient_id",
     "FOR EACH ROW WHEN ((OLD.wrapped IS NOT NULL AND NEW.wrapped IS NULL) OR OLD.patient_id IS DISTINCT FROM NEW.patient_id)"),
    ("record_keys", "AFTER DELETE OR TRUNCATE", "FOR EACH STATEMENT"),
)  # fmt: skip


def _name(table: str, number: int) -> str:
    return f"{table}_record_changed_{number}"


def upgrade() -> None:
    counter = op.create_table(
        "record_changes",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_changes")),
    )
    op.bulk_insert(counter, [{"id": 1, "changes": 0}])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION record_changed() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN UPDATE record_changes SET changes = changes + 1 WHERE id = 1; RETURN NULL; END $$"
    )
    for number, (table, when, each) in enumerate(_TRIGGERS):
        op.execute(f"CREATE TRIGGER {_name(table, number)} {when} ON {table} {each} EXECUTE FUNCTION record_changed()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for number, (table, _, _) in enumerate(_TRIGGERS):
            op.execute(f"DROP TRIGGER {_name(table, number)} ON {table}")
        op.execute("DROP FUNCTION record_changed()")
    op.drop_table("record_changes")
