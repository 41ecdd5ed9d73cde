"""Step-level verification: a review carries the reviewer's marks on the version's numbered steps
(`reviews.steps`, a JSON list of {step, verdict, category, severity, note, correction}); null when none.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reviews", sa.Column("steps", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("steps")
