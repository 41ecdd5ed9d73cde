"""Migration 0011 (issue #16, the read models) upgrades a database that already holds a reviewed project:
the index is there afterwards, the reports read the same, and `clinreason migrate-db` copies the upgraded
database as before."""

from __future__ import annotations

from analytics import reviewdata
from sqlalchemy import inspect
from store.migration_steps import copied_by_migrate_db, downgraded_to, project_at

from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.stats import project_stats
from clinreason.store import db as dbm


def _reports(engine, pid):
    with engine.connect() as conn:
        return agreement_report(conn, project_id=pid, resamples=100, min_overlap=3), project_stats(conn, project_id=pid)


def test_an_0010_database_with_reviews_upgrades_and_reads_the_same(tmp_path):
    path, engine, project = project_at(tmp_path, "0010")
    reviewdata.build(engine, project["id"], n_items=80, seed=11, step_judge_rate=0.5)
    assert "ix_reviews_item_id_rationale_id" not in {i["name"] for i in inspect(engine).get_indexes("reviews")}
    before = _reports(engine, project["id"])

    dbm.upgrade(engine)
    assert dbm.current_revision(engine) == dbm.head_revision() >= "0011"
    assert "ix_reviews_item_id_rationale_id" in {i["name"] for i in inspect(engine).get_indexes("reviews")}
    assert _reports(engine, project["id"]) == before
    engine.dispose()

    copied = copied_by_migrate_db(path, tmp_path)
    assert "ix_reviews_item_id_rationale_id" in {i["name"] for i in inspect(copied).get_indexes("reviews")}
    assert _reports(copied, project["id"]) == before
    copied.dispose()


def test_a_downgrade_to_0010_drops_the_index(tmp_path):
    engine = downgraded_to(tmp_path, "0010")
    assert "ix_reviews_item_id_rationale_id" not in {i["name"] for i in inspect(engine).get_indexes("reviews")}
    engine.dispose()
