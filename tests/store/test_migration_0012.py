"""Migration 0012 (issue #16, the kept review scan) upgrades a database that already holds a reviewed project:
the table and the two indexes are there afterwards, the reports read the same (and keep their state in the new
table), `clinreason migrate-db` copies the upgraded database, and a downgrade removes them again."""

from __future__ import annotations

from analytics import reviewdata
from sqlalchemy import inspect, select
from store.migration_steps import copied_by_migrate_db, downgraded_to, project_at

from clinreason.analytics import kept
from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.scan import scan_reviews
from clinreason.analytics.stats import project_stats
from clinreason.store import db as dbm
from clinreason.store import projects as store_projects
from clinreason.store.tables import scan_states

INDEXES = {"reviews": "ix_reviews_created_at", "decisions": "ix_decisions_created_at"}


def _reports(engine, pid, scan=None):
    with engine.connect() as conn:
        return (agreement_report(conn, project_id=pid, resamples=100, min_overlap=3, scan=scan),
                project_stats(conn, project_id=pid, scan=scan))


def _indexes(engine) -> dict[str, bool]:
    found = inspect(engine)
    return {table: name in {i["name"] for i in found.get_indexes(table)} for table, name in INDEXES.items()}


def test_an_0011_database_with_reviews_upgrades_and_reads_the_same(tmp_path):
    path, engine, project = project_at(tmp_path, "0011")
    reviewdata.build(engine, project["id"], n_items=80, seed=12, step_judge_rate=0.5)
    assert "scan_states" not in inspect(engine).get_table_names()
    assert _indexes(engine) == {"reviews": False, "decisions": False}
    with engine.connect() as conn:  # a full scan: the reports of an up-to-date schema read scan_states
        full = scan_reviews(conn, project_id=project["id"], rubric_body=store_projects.latest_rubric(
            conn, project_id=project["id"]))
    before = _reports(engine, project["id"], full)

    dbm.upgrade(engine)
    assert dbm.current_revision(engine) == dbm.head_revision()
    assert "scan_states" in inspect(engine).get_table_names()
    assert _indexes(engine) == {"reviews": True, "decisions": True}
    assert _reports(engine, project["id"]) == before
    scan = kept.refresh(engine, project_id=project["id"])  # the state is kept in the new table
    with engine.connect() as conn:
        assert conn.execute(select(scan_states.c.project_id)).scalars().all() == [project["id"]]
    assert _reports(engine, project["id"], scan) == before
    engine.dispose()

    copied = copied_by_migrate_db(path, tmp_path)
    assert _indexes(copied) == {"reviews": True, "decisions": True}
    assert _reports(copied, project["id"]) == before
    copied.dispose()


def test_a_downgrade_to_0011_drops_the_table_and_the_indexes(tmp_path):
    engine = downgraded_to(tmp_path, "0011")
    assert "scan_states" not in inspect(engine).get_table_names()
    assert _indexes(engine) == {"reviews": False, "decisions": False}
    engine.dispose()
