"""An index for lease expiry sweeps, and calibration items: versions whose truth an admin knows (known-good, or with a seeded error), slipped
into reviewers' queues to measure them.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibration",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("rationale_id", sa.String(length=40), nullable=False),
        sa.Column("expect", sa.String(length=10), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_calibration_item_id_items")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_calibration_project_id_projects")),
        sa.ForeignKeyConstraint(["rationale_id"], ["rationales.id"],
                                name=op.f("fk_calibration_rationale_id_rationales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibration")),
        sa.UniqueConstraint("item_id", name=op.f("uq_calibration_item_id")),
    )


    op.create_index(op.f("ix_assignments_status_expires_at"), "assignments", ["status", "expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_assignments_status_expires_at"), table_name="assignments")
    op.drop_table("calibration")
