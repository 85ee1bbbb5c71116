"""Held documents indexed: a document shown once its hold ends is told to the patient

A document its author holds from the patient until an announcement was left out of its deposit's message and
never told afterwards. Each notification pass now looks for the held documents whose hold has just ended
(pipeline/notify/releases.py): a partial index keeps that to the held ones.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_HELD = sa.text("hidden_from_patient_until IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_documents_held", "documents", ["hidden_from_patient_until", "created_at"], postgresql_where=_HELD, sqlite_where=_HELD
    )


def downgrade() -> None:
    op.drop_index("ix_documents_held", table_name="documents")
