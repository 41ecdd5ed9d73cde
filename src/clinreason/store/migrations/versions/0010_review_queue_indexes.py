"""The review queue and the read models at a million items (issue 16): indexes only.

- `ix_items_queue_order` (project_id, state, created_at, id): in-review items oldest first, read a window
  at a time in index order (the lease query no longer sorts every waiting item);
- `ix_items_queue_specialty` (project_id, state, lower(specialty), created_at, id): the same within one
  specialty, matched without case, and for the items without one;
- `ix_calibration_project_id_created_at`: the calibration probe looked up on every lease;
- `ix_rationales_model_origin_tokens`, `ix_item_sources_source_item_id` and the partial `ix_items_flagged`
  (flag_reason not null): what `status` counts, read from indexes alone.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_queue_order", "items", ["project_id", "state", "created_at", "id"])
    op.create_index("ix_items_queue_specialty", "items",
                    ["project_id", "state", sa.text("lower(specialty)"), "created_at", "id"])
    op.create_index(op.f("ix_calibration_project_id_created_at"), "calibration", ["project_id", "created_at"])
    op.create_index("ix_rationales_model_origin_tokens", "rationales",
                    ["model", "origin", "prompt_tokens", "completion_tokens", "cost", "item_id"])
    op.create_index(op.f("ix_item_sources_source_item_id"), "item_sources", ["source", "item_id"])
    flagged = sa.text("flag_reason IS NOT NULL")
    op.create_index("ix_items_flagged", "items", ["project_id"], sqlite_where=flagged, postgresql_where=flagged)


def downgrade() -> None:
    op.drop_index("ix_items_flagged", table_name="items")
    op.drop_index(op.f("ix_item_sources_source_item_id"), table_name="item_sources")
    op.drop_index("ix_rationales_model_origin_tokens", table_name="rationales")
    op.drop_index(op.f("ix_calibration_project_id_created_at"), table_name="calibration")
    op.drop_index("ix_items_queue_specialty", table_name="items")
    op.drop_index("ix_items_queue_order", table_name="items")
