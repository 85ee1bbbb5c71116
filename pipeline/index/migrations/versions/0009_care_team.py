"""the care team over time: an end to an authorization, and who set it

`record_relations.until`: the moment an authorization, a declared consent or a facility's authorization for
a stay ends (NULL: until revoked). `record_relations.granted_by`: who set a relation when it is not the
patient (the professional declaring the patient's consent, the attending physician naming a successor).
`ix_documents_patient_author`: whether the actor of a request authored a document of the record (the care
team's "has treated the patient"), one index probe per access.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("record_relations") as batch:
        batch.add_column(sa.Column("until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("granted_by", sa.String(length=128), nullable=True))
    op.create_index("ix_documents_patient_author", "documents", ["patient_id", "author_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_documents_patient_author", table_name="documents")
    with op.batch_alter_table("record_relations") as batch:
        batch.drop_column("granted_by")
        batch.drop_column("until")
