"""Review state as tables, not event-log scans: extra-reviewer requests (read by the queue on every
lease) and the feedback consensus computed for a version it sent back (rendered by regeneration).
Existing `consensus.extra_reviewer` events are copied into the new table.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extra_reviewer_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("rationale_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_extra_reviewer_requests_item_id_items")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_extra_reviewer_requests_project_id_projects")),
        sa.ForeignKeyConstraint(["rationale_id"], ["rationales.id"],
                                name=op.f("fk_extra_reviewer_requests_rationale_id_rationales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extra_reviewer_requests")),
    )
    op.create_index(op.f("ix_extra_reviewer_requests_rationale_id"), "extra_reviewer_requests", ["rationale_id"])
    op.create_index(op.f("ix_extra_reviewer_requests_project_id_item_id"), "extra_reviewer_requests",
                    ["project_id", "item_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=False),
        sa.Column("rationale_id", sa.String(length=40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_feedback_item_id_items")),
        sa.ForeignKeyConstraint(["rationale_id"], ["rationales.id"], name=op.f("fk_feedback_rationale_id_rationales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_item_id"), "feedback", ["item_id"])
    bind = op.get_bind()
    events = sa.table("events", sa.column("project_id"), sa.column("item_id"), sa.column("kind"),
                      sa.column("actor"), sa.column("detail", sa.JSON()), sa.column("at"))
    rows = bind.execute(sa.select(events).where(events.c.kind == "consensus.extra_reviewer")).mappings().all()
    copied = [{"project_id": r["project_id"], "item_id": r["item_id"], "rationale_id": (r["detail"] or {})["rationale_id"],
               "reason": (r["detail"] or {}).get("reason", ""), "actor": r["actor"], "created_at": r["at"]}
              for r in rows if r["item_id"] and (r["detail"] or {}).get("rationale_id")]
    if copied:
        op.bulk_insert(sa.table("extra_reviewer_requests", *(sa.column(c) for c in copied[0])), copied)


def downgrade() -> None:
    op.drop_index(op.f("ix_feedback_item_id"), table_name="feedback")
    op.drop_table("feedback")
    op.drop_index(op.f("ix_extra_reviewer_requests_project_id_item_id"), table_name="extra_reviewer_requests")
    op.drop_index(op.f("ix_extra_reviewer_requests_rationale_id"), table_name="extra_reviewer_requests")
    op.drop_table("extra_reviewer_requests")
