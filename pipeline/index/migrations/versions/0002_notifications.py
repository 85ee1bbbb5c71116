"""notifications

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=16), nullable=True),
        sa.Column("email_rejected", sa.String(length=64), nullable=True),
        sa.Column("phone_rejected", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_notifications_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index("ix_notifications_status_next", ["status", "next_attempt_at"], unique=False)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=16), server_default="pending", nullable=False))
        batch_op.add_column(sa.Column("composed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_outbox_status_patient", ["status", "patient_id"], unique=False)
        batch_op.drop_column("delivered_at")

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notify_documents", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("notify_reimbursements", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("notify_reimbursements")
        batch_op.drop_column("notify_documents")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index("ix_outbox_status_patient")
        batch_op.drop_column("composed_at")
        batch_op.drop_column("status")
        batch_op.drop_column("detail")

    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_status_next")
        batch_op.drop_index(batch_op.f("ix_notifications_patient_id"))

    op.drop_table("notifications")
    op.drop_table("contacts")
