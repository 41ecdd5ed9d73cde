"""Migration 0014 (issue #16, the reliability fit kept between processes) upgrades a database that already
holds a reviewed project: the reports read the same, the first `stats` after it stores the fit, and a
downgrade drops the table (the processes then fit for themselves, as before)."""

from __future__ import annotations

from analytics import reviewdata
from sqlalchemy import inspect
from store.migration_steps import copied_by_migrate_db, downgraded_to, project_at

from clinreason.analytics import reliability
from clinreason.analytics.stats import project_stats
from clinreason.store import db as dbm
from clinreason.store import evidencefits


def _stats(engine, pid):
    with engine.connect() as conn:
        return project_stats(conn, project_id=pid)


def test_an_0013_database_with_reviews_upgrades_and_keeps_its_fit(tmp_path):
    path, engine, project = project_at(tmp_path, "0013")
    pid = project["id"]
    reviewdata.build(engine, pid, n_items=50, seed=4)
    reliability._EVIDENCE_CACHE.clear()
    before = _stats(engine, pid)
    assert reliability.keep_fit(engine, pid) is False  # nowhere to keep it yet
    assert "evidence_fits" not in inspect(engine).get_table_names()

    dbm.upgrade(engine)
    assert dbm.current_revision(engine) == dbm.head_revision()
    reliability._EVIDENCE_CACHE.clear()
    assert _stats(engine, pid) == before
    assert reliability.keep_fit(engine, pid) is True
    engine.dispose()

    copied = copied_by_migrate_db(path, tmp_path)
    with copied.connect() as conn:
        assert evidencefits.load(conn, project_id=pid) is not None
    reliability._EVIDENCE_CACHE.clear()
    assert _stats(copied, pid) == before
    copied.dispose()
    reliability._EVIDENCE_CACHE.clear()


def test_a_downgrade_to_0013_drops_the_table(tmp_path):
    engine = downgraded_to(tmp_path, "0013")
    assert "evidence_fits" not in inspect(engine).get_table_names()
    engine.dispose()
