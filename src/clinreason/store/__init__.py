"""Persistence: SQLAlchemy 2 Core tables, Alembic migrations, repositories. SQLite (WAL) or PostgreSQL."""
