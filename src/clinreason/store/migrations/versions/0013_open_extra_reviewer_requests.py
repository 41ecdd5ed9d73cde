"""Open extra-reviewer requests (issue 16, item 5): every lease asks which versions consensus wanted one more
reviewer for, among the items still in review. It read every request the project ever made and joined each
to its item; an adaptive project makes thousands, almost all for items long decided. Now:

- `extra_reviewer_requests.closed_at`: when the request's item left review (NULL while it is in review;
  cleared again when the item comes back, e.g. from calibration). store/items.py keeps it with every move;
- `ix_extra_reviewer_requests_open` (project_id, id) WHERE closed_at IS NULL: the open requests only.

The upgrade closes the requests of items not in review now.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("extra_reviewer_requests") as batch:
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text("UPDATE extra_reviewer_requests SET closed_at = created_at WHERE item_id NOT IN "
                       "(SELECT id FROM items WHERE state = 'in_review')"))
    open_ = sa.text("closed_at IS NULL")
    op.create_index("ix_extra_reviewer_requests_open", "extra_reviewer_requests", ["project_id", "id"],
                    sqlite_where=open_, postgresql_where=open_)


def downgrade() -> None:
    op.drop_index("ix_extra_reviewer_requests_open", table_name="extra_reviewer_requests")
    with op.batch_alter_table("extra_reviewer_requests") as batch:
        batch.drop_column("closed_at")
