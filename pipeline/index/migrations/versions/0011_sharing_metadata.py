"""document-sharing metadata (IHE MHD / French PDSm): per document, per pending item, per submission set

`document_sharing` keeps, per indexed document, the fields the French document-sharing guide asks for and
the documents table lacks (confidentiality, practice setting, facility type, format, language, event codes,
author identity and facility, unique id). `batch_items.sharing` carries them from the intake to the index
(JSON, optional). `submission_sets` makes an MHD submission idempotent on its SubmissionSet identifier.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batch_items", sa.Column("sharing", sa.Text(), nullable=True))
    op.create_table(
        "document_sharing",
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("unique_id", sa.String(length=256), nullable=True),
        sa.Column("confidentiality", sa.String(length=16), nullable=True),
        sa.Column("practice_setting", sa.String(length=64), nullable=True),
        sa.Column("facility_type", sa.String(length=64), nullable=True),
        sa.Column("format_code", sa.String(length=128), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("event_codes", sa.String(length=512), nullable=True),
        sa.Column("author_given", sa.String(length=128), nullable=True),
        sa.Column("author_family", sa.String(length=128), nullable=True),
        sa.Column("author_facility", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], name=op.f("fk_document_sharing_document_id_documents")),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_document_sharing")),
    )
    op.create_table(
        "submission_sets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("unique_id", sa.String(length=256), nullable=False),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_submission_sets_batch_id_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission_sets")),
        sa.UniqueConstraint("source", "unique_id", name=op.f("uq_submission_sets_source")),
    )
    op.create_index(op.f("ix_submission_sets_batch_id"), "submission_sets", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_submission_sets_batch_id"), table_name="submission_sets")
    op.drop_table("submission_sets")
    op.drop_table("document_sharing")
    # Plain DROP COLUMN: batch mode would rebuild `batch_items`, which documents reference (see 0005).
    op.drop_column("batch_items", "sharing")
