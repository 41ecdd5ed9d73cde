"""The read models at a million items (issue 16, item 4): one index.

- `ix_reviews_item_id_rationale_id` (item_id, rationale_id): the per-item review counts and rounds that
  `stats`, the dashboard and the dataset card group by item (`count(distinct rationale_id)` per item) are
  read from this index alone, in item order, instead of sorting every review of the project; it also
  serves every lookup of an item's reviews.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_reviews_item_id_rationale_id"), "reviews", ["item_id", "rationale_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reviews_item_id_rationale_id"), table_name="reviews")
