"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("actor_kind", sa.String(length=32), nullable=False),
        sa.Column("profession", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("chain", "seq", name=op.f("uq_audit_entries_chain")),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("source", "manifest_digest", name=op.f("uq_batches_source")),
    )
    op.create_table(
        "feeds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("header", sa.Text(), nullable=True),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
        sa.UniqueConstraint("source", "digest", name=op.f("uq_feeds_source")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("job", "run_date", name=op.f("uq_job_runs_job")),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attending_physician_id", sa.String(length=128), nullable=True),
        sa.Column("emergency_opposed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("is_minor", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notify_email", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("notify_sms", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notify_every_access", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("ins", name=op.f("uq_patients_ins")),
    )
    op.create_table(
        "batch_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("slot", sa.String(length=512), nullable=False),
        sa.Column("file", sa.String(length=512), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.Column("source_document_id", sa.String(length=256), nullable=True),
        sa.Column("patient_ins", sa.String(length=32), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("document_type", sa.String(length=128), nullable=True),
        sa.Column("service_date", sa.String(length=32), nullable=True),
        sa.Column("author_id", sa.String(length=64), nullable=True),
        sa.Column("author_profession", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("crashes", sa.Integer(), nullable=False),
        sa.Column("inbox_key", sa.String(length=256), nullable=True),
        sa.Column("pending_object_key", sa.String(length=256), nullable=True),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("quarantine_key", sa.String(length=256), nullable=True),
        sa.Column("quarantine_master_key_id", sa.String(length=256), nullable=True),
        sa.Column("quarantine_wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("quarantine_until", sa.Date(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_batch_items_batch_id_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_items")),
        sa.UniqueConstraint("batch_id", "slot", name=op.f("uq_batch_items_batch_id")),
    )
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batch_items_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_items_state"), ["state"], unique=False)

    op.create_table(
        "care_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("line_id", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("care_date", sa.Date(), nullable=False),
        sa.Column("act_code", sa.String(length=32), nullable=False),
        sa.Column("act_label", sa.Text(), nullable=False),
        sa.Column("professional_id", sa.String(length=64), nullable=False),
        sa.Column("professional_name", sa.Text(), nullable=False),
        sa.Column("profession", sa.String(length=64), nullable=False),
        sa.Column("amount_billed", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("amount_reimbursed", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("reimbursement_date", sa.Date(), nullable=False),
        sa.Column("supersedes", sa.String(length=128), nullable=True),
        sa.Column("superseded_by", sa.String(length=128), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("feed_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_care_events_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_events")),
        sa.UniqueConstraint("source", "line_id", name=op.f("uq_care_events_source")),
    )
    with op.batch_alter_table("care_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_care_events_care_date"), ["care_date"], unique=False)
        batch_op.create_index("ix_care_events_patient_date", ["patient_id", "care_date"], unique=False)
        batch_op.create_index(
            "ix_care_events_supersedes",
            ["source", "supersedes"],
            unique=False,
            postgresql_where=sa.text("supersedes IS NOT NULL"),
            sqlite_where=sa.text("supersedes IS NOT NULL"),
        )

    op.create_table(
        "feed_chunks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("feed_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("inbox_key", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["feed_id"], ["feeds.id"], name=op.f("fk_feed_chunks_feed_id_feeds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_chunks")),
        sa.UniqueConstraint("feed_id", "number", name=op.f("uq_feed_chunks_feed_id")),
    )
    with op.batch_alter_table("feed_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feed_chunks_feed_id"), ["feed_id"], unique=False)

    op.create_table(
        "feed_rejections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("feed_id", sa.String(length=36), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["feed_id"], ["feeds.id"], name=op.f("fk_feed_rejections_feed_id_feeds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_rejections")),
        sa.UniqueConstraint("feed_id", "line_number", name=op.f("uq_feed_rejections_feed_id")),
    )
    with op.batch_alter_table("feed_rejections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feed_rejections_feed_id"), ["feed_id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ref_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_outbox_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("patient_id", "kind", "ref_id", name=op.f("uq_outbox_patient_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "record_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("master_key_id", sa.String(length=256), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_record_keys_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_keys")),
        sa.UniqueConstraint("patient_id", name=op.f("uq_record_keys_patient_id")),
    )
    with op.batch_alter_table("record_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_record_keys_master_key_id"), ["master_key_id"], unique=False)

    op.create_table(
        "record_relations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_record_relations_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_relations")),
        sa.UniqueConstraint("patient_id", "actor_id", "relation", name=op.f("uq_record_relations_patient_id")),
    )
    with op.batch_alter_table("record_relations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_record_relations_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("source_document_id", sa.String(length=256), nullable=False),
        sa.Column("batch_item_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("class_code", sa.String(length=8), nullable=False),
        sa.Column("type_code", sa.String(length=32), nullable=False),
        sa.Column("classified_by", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("masked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("hidden_from_patient_until", sa.Date(), nullable=True),
        sa.Column("hidden_from_representatives", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=True),
        sa.Column("author_id", sa.String(length=64), nullable=True),
        sa.Column("author_profession", sa.String(length=64), nullable=True),
        sa.Column("mime_type", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_hmac", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=256), nullable=False),
        sa.Column("record_key_id", sa.String(length=36), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["batch_item_id"], ["batch_items.id"], name=op.f("fk_documents_batch_item_id_batch_items")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_documents_patient_id_patients")),
        sa.ForeignKeyConstraint(["record_key_id"], ["record_keys.id"], name=op.f("fk_documents_record_key_id_record_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("batch_item_id", name=op.f("uq_documents_batch_item_id")),
        sa.UniqueConstraint("object_key", name=op.f("uq_documents_object_key")),
        sa.UniqueConstraint("source", "source_document_id", name=op.f("uq_documents_source")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_documents_content_hmac"), ["content_hmac"], unique=False)
        batch_op.create_index(batch_op.f("ix_documents_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_documents_record_key_id"), ["record_key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_documents_record_key_id"))
        batch_op.drop_index(batch_op.f("ix_documents_patient_id"))
        batch_op.drop_index(batch_op.f("ix_documents_content_hmac"))

    op.drop_table("documents")
    with op.batch_alter_table("record_relations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_relations_patient_id"))

    op.drop_table("record_relations")
    with op.batch_alter_table("record_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_keys_master_key_id"))

    op.drop_table("record_keys")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_patient_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("feed_rejections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feed_rejections_feed_id"))

    op.drop_table("feed_rejections")
    with op.batch_alter_table("feed_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feed_chunks_feed_id"))

    op.drop_table("feed_chunks")
    with op.batch_alter_table("care_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_care_events_supersedes", postgresql_where=sa.text("supersedes IS NOT NULL"), sqlite_where=sa.text("supersedes IS NOT NULL")
        )
        batch_op.drop_index("ix_care_events_patient_date")
        batch_op.drop_index(batch_op.f("ix_care_events_care_date"))

    op.drop_table("care_events")
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_items_state"))
        batch_op.drop_index(batch_op.f("ix_batch_items_batch_id"))

    op.drop_table("batch_items")
    op.drop_table("patients")
    op.drop_table("job_runs")
    op.drop_table("feeds")
    op.drop_table("batches")
    op.drop_table("audit_entries")
