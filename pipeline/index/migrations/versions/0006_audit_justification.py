"""audit entries: encoding version, what the actor was told, the break-glass justification (sealed)

The justification is kept sealed under the patient's record key (pipeline/core/sealedfields.py); no
entry before this revision has one, so there is nothing to seal and no key is needed here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        # Entries written before this revision were hashed under encoding version 1.
        batch_op.add_column(sa.Column("version", sa.SmallInteger(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("told_reason", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("justification_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_column("justification_sealed")
        batch_op.drop_column("told_reason")
        batch_op.drop_column("version")
