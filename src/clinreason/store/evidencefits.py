"""A project's last reviewer-reliability fit (`evidence_fits`, migration 0014): read it, and write a newer one
without overwriting a fit another process made from more reviews. `analytics.reliability` decides when a fit
still stands and what the body holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, inspect, select

from clinreason.store.common import aware, dialect_insert, now
from clinreason.store.tables import evidence_fits


@dataclass(frozen=True, slots=True)
class StoredFit:
    rubric_key: str
    fitted_at: int  # reviews counted at the fit
    counted: int  # reviews counted when written
    newest: datetime | None  # the newest created_at among those
    at_newest: int  # how many of them carry exactly that instant
    body: str  # what analytics.reliability encoded


def available(conn: Connection) -> bool:
    """Whether the schema has `evidence_fits` (migration 0014): without it every process fits for itself."""
    return inspect(conn).has_table(evidence_fits.name)


def load(conn: Connection, *, project_id: int) -> StoredFit | None:
    row = conn.execute(select(evidence_fits).where(evidence_fits.c.project_id == project_id)).first()
    if row is None:
        return None
    return StoredFit(rubric_key=row.rubric_key, fitted_at=int(row.fitted_at), counted=int(row.counted),
                     newest=aware(row.newest), at_newest=int(row.at_newest), body=str(row.body))


def save(conn: Connection, *, project_id: int, fit: StoredFit, replace: bool = False) -> bool:
    """Store `fit` unless the stored one was fitted on more reviews (`replace`: store it whatever is there, for
    a stored fit that did not decode or was made with another rubric); True if written."""
    values = {"rubric_key": fit.rubric_key, "fitted_at": fit.fitted_at, "counted": fit.counted,
              "newest": fit.newest, "at_newest": fit.at_newest, "body": fit.body, "updated_at": now()}
    stmt = dialect_insert(conn, evidence_fits).values(project_id=project_id, **values)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["project_id"], set_={name: excluded[name] for name in values},
        where=None if replace else evidence_fits.c.fitted_at <= excluded.fitted_at)
    # RETURNING, not rowcount: what a driver reports for an upsert whose WHERE refused it varies
    return conn.execute(stmt.returning(evidence_fits.c.project_id)).first() is not None
