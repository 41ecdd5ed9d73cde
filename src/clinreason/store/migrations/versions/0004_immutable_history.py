"""Immutable history: rationale versions, submitted reviews and events can never be changed or
deleted, by clinreason or by anyone with a SQL prompt. Corrections are new versions and new events.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: table -> what may never happen to its rows
GUARDED = {"rationales": ("UPDATE", "DELETE"), "reviews": ("UPDATE", "DELETE"), "events": ("UPDATE", "DELETE"),
           "decisions": ("UPDATE", "DELETE")}


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("""
            CREATE OR REPLACE FUNCTION clinreason_immutable() RETURNS trigger AS $$
            BEGIN
              RAISE EXCEPTION 'clinreason: % rows are immutable (% refused); store a new version or event instead',
                TG_TABLE_NAME, TG_OP;
            END $$ LANGUAGE plpgsql
        """)
        for table, ops in GUARDED.items():
            op.execute(f"CREATE TRIGGER {table}_immutable BEFORE {' OR '.join(ops)} ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION clinreason_immutable()")
        return
    for table, ops in GUARDED.items():
        for what in ops:
            op.execute(f"CREATE TRIGGER {table}_no_{what.lower()} BEFORE {what} ON {table} BEGIN "
                       f"SELECT RAISE(ABORT, 'clinreason: {table} rows are immutable ({what} refused); "
                       f"store a new version or event instead'); END")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in GUARDED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        op.execute("DROP FUNCTION IF EXISTS clinreason_immutable()")
        return
    for table, ops in GUARDED.items():
        for what in ops:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{what.lower()}")
