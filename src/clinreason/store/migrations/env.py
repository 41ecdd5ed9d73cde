"""Alembic environment: runs on the connection clinreason hands over (never builds its own engine)."""

from alembic import context

from clinreason.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs the alembic CLI by hand
    raise SystemExit("run migrations through `clinreason init` (it passes the database connection)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
