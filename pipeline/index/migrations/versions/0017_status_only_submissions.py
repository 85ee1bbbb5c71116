"""ITI-65 submissions that change statuses only: recorded too (no batch), with the versions they changed

A SubmissionSet holding only status changes (entered-in-error, superseded) brought no batch: it was not
recorded, so the same Bundle sent again after the source deposited a newer version changed that newer one.
It is now recorded (`batch_id` NULL) with `changes` (JSON: the Bundle entry -> the version it changed), and a
replay of any SubmissionSet is answered from them, changing nothing.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submission_sets") as batch:
        batch.alter_column("batch_id", existing_type=sa.String(length=36), nullable=True)
        batch.add_column(sa.Column("changes", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM submission_sets WHERE batch_id IS NULL")
    with op.batch_alter_table("submission_sets") as batch:
        batch.drop_column("changes")
        batch.alter_column("batch_id", existing_type=sa.String(length=36), nullable=False)
