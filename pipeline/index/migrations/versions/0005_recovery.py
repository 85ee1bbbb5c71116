"""claims held under a lease; batches and feeds record when their messages were all sent

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("batch_items", "feed_chunks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    for table in ("batches", "feeds"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        # What was recorded before this revision was sent by an intake that has finished.
        op.execute(sa.text(f"UPDATE {table} SET sent_at = created_at"))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite has it since 3.35): batch mode would rebuild `batches`, which other
    # tables reference, and SQLite refuses that with foreign keys on.
    for table in ("batches", "feeds"):
        op.drop_column(table, "sent_at")
    for table in ("batch_items", "feed_chunks"):
        op.drop_column(table, "lease_until")
