"""a record's documents in listing order: (patient_id, service_date DESC, id)

The listing (pipeline/access/listing.py) pages in SQL: this index gives its order without sorting the
record's documents for each page.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns: list[str | sa.ColumnElement[object]] = ["patient_id", sa.literal_column("service_date").desc(), "id"]
    op.create_index("ix_documents_patient_listing", "documents", columns, unique=False)


def downgrade() -> None:
    op.drop_index("ix_documents_patient_listing", table_name="documents")
