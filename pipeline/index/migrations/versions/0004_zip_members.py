"""batch items read straight from an uploaded zip; documents held until an announcement

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbox_member", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("announcement_date", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.drop_column("announcement_date")
        batch_op.drop_column("inbox_member")
