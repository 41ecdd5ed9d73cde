"""The privacy gate (issue 18): each scan that found identifiers before an LLM request (`privacy_holds`:
held or flagged, with the findings and how an admin resolved it), and an item's earlier contents when an
admin edits it (`item_revisions`). Items gain the `held` state, which needs no schema change.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("gate", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resume_state", sa.String(length=20), nullable=True),
        sa.Column("endpoint", sa.String(length=300), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_privacy_holds_item_id_items")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_privacy_holds_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_holds")),
    )
    op.create_index(op.f("ix_privacy_holds_project_id_status"), "privacy_holds", ["project_id", "status"])
    op.create_index(op.f("ix_privacy_holds_item_id"), "privacy_holds", ["item_id"])
    op.create_table(
        "item_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("answer_text", sa.Text(), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("reference_explanation", sa.Text(), nullable=True),
        sa.Column("replaced_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_item_revisions_item_id_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_revisions")),
        sa.UniqueConstraint("item_id", "revision", name=op.f("uq_item_revisions_item_id_revision")),
    )


def downgrade() -> None:
    op.drop_table("item_revisions")
    op.drop_index(op.f("ix_privacy_holds_item_id"), table_name="privacy_holds")
    op.drop_index(op.f("ix_privacy_holds_project_id_status"), table_name="privacy_holds")
    op.drop_table("privacy_holds")
