"""The reliability fit kept between processes (issue 16, item 4): `stats --json` and `/dashboard` fitted the
Dawid–Skene model on every vote of the project in each new process (about 6 s at 567k reviews), although the
fit stands until the reviews grow by a tenth. `evidence_fits` holds a project's last fit, the rubric it was
made with and the review count it saw (analytics/reliability.py):

- `evidence_fits` (project_id primary key): rubric_key, fitted_at (reviews counted at the fit), reviews
  counted and the newest created_at among them when stored, the model as JSON.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_fits",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("rubric_key", sa.String(length=64), nullable=False),
        sa.Column("fitted_at", sa.Integer(), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("newest", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at_newest", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_evidence_fits_project_id_projects")),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_evidence_fits")),
    )


def downgrade() -> None:
    op.drop_table("evidence_fits")
