"""Items indexed by inbox object: whether a shared one is still waited on is one index probe

Once a micro-batch's items are final, the worker asks whether an item still waits on their pack (or
uploaded zip) before deleting it (pipeline/index/repo.py `still_waited_on`). Without an index on the
item's inbox object that question read every item of the batch, each time: 2 s of PostgreSQL's time
over an 8,000-document batch (`bench ingest`), and growing with the batch's size.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_batch_items_inbox_key", "batch_items", ["inbox_key"])


def downgrade() -> None:
    op.drop_index("ix_batch_items_inbox_key", table_name="batch_items")
