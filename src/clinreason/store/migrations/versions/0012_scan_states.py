"""The kept review scan (issue 16, item 4): agreement, stats, the dashboard and the dataset card read a
project's scan counts from `scan_states` and bring them up to date from the reviews and decisions that
arrived since (analytics/kept.py). Two indexes find those rows:

- `ix_reviews_created_at` (reviews.created_at)
- `ix_decisions_created_at` (decisions.created_at)

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_reviews_created_at"), "reviews", ["created_at"])
    op.create_index(op.f("ix_decisions_created_at"), "decisions", ["created_at"])
    op.create_table(
        "scan_states",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rubric_key", sa.String(length=64), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("reviews_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decisions_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_scan_states_project_id_projects")),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_scan_states")),
    )


def downgrade() -> None:
    op.drop_table("scan_states")
    op.drop_index(op.f("ix_decisions_created_at"), table_name="decisions")
    op.drop_index(op.f("ix_reviews_created_at"), table_name="reviews")
