"""document versions (status, version number, links), the item's version action, the patient's sections

A source's document may now have several versions under one (source, source_document_id): the unique
constraint takes the version number in. Existing documents are version 1, current. `patient_sections`
holds what the patient writes besides documents (medical profile, emergency contacts), sealed under the
record key; there is none before this revision, so nothing to seal here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("status", sa.String(length=24), server_default="current", nullable=False))
        batch_op.add_column(sa.Column("supersedes_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("superseded_by_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("uq_documents_source", type_="unique")
        batch_op.create_unique_constraint("uq_documents_source_version", ["source", "source_document_id", "version"])
    # Plain ADD/DROP COLUMN (SQLite has both): batch mode would rebuild `batch_items`, which `documents`
    # references, and SQLite refuses that with foreign keys on. Nothing references `documents`.
    op.add_column("batch_items", sa.Column("version_action", sa.String(length=16), nullable=True))
    op.create_table(
        "patient_sections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("content_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_patient_sections_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_sections")),
        sa.UniqueConstraint("patient_id", "kind", name=op.f("uq_patient_sections_patient_id")),
    )
    op.create_index(op.f("ix_patient_sections_patient_id"), "patient_sections", ["patient_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_patient_sections_patient_id"), table_name="patient_sections")
    op.drop_table("patient_sections")
    op.drop_column("batch_items", "version_action")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_constraint("uq_documents_source_version", type_="unique")
        batch_op.create_unique_constraint("uq_documents_source", ["source", "source_document_id"])
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("superseded_by_id")
        batch_op.drop_column("supersedes_id")
        batch_op.drop_column("status")
        batch_op.drop_column("version")
