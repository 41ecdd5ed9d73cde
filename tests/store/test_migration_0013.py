"""Migration 0013 (issue #16, open extra-reviewer requests) upgrades a database that already holds requests:
those of items out of review are closed, those of items in review stay open and are what the lease reads,
`clinreason migrate-db` copies the column, and a downgrade removes the column and its index."""

from __future__ import annotations

from sqlalchemy import inspect, select, text
from store.migration_steps import copied_by_migrate_db, downgraded_to, project_at

from clinreason.store import db as dbm
from clinreason.store import reviews as review_store
from clinreason.store.tables import extra_reviewer_requests

INDEX = "ix_extra_reviewer_requests_open"


def _seed(engine, pid):
    """Two items with a version each and a request each: one still in review, one accepted."""
    with engine.begin() as conn:
        for n, state in ((1, "in_review"), (2, "accepted")):
            conn.execute(text(
                "INSERT INTO items (id, project_id, content_hash, question, options, answer_labels, language, "
                "state, strikes, auto_retries, meta, created_at, updated_at) VALUES (:id, :pid, :h, 'q', '[]', "
                "'[\"A\"]', 'en', :state, 0, 0, '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                {"id": f"i{n}", "pid": pid, "h": f"h{n}", "state": state})
            conn.execute(text(
                "INSERT INTO rationales (id, item_id, version, origin, author, steps, final_answer, text, params, "
                "prompt_tokens, completion_tokens, cost, parse_status, created_at) VALUES (:id, :item, 1, "
                "'generated', 'model:m', '[]', '[\"A\"]', 't', '{}', 0, 0, 0.0, 'ok', '2026-01-01 00:00:00')"),
                {"id": f"r{n}", "item": f"i{n}"})
            conn.execute(text(
                "INSERT INTO extra_reviewer_requests (project_id, item_id, rationale_id, reason, actor, created_at) "
                "VALUES (:pid, :item, :rid, 'split', 'consensus', '2026-01-02 00:00:00')"),
                {"pid": pid, "item": f"i{n}", "rid": f"r{n}"})


def test_a_0012_database_with_requests_upgrades_closing_those_of_items_out_of_review(tmp_path):
    path, engine, project = project_at(tmp_path, "0012")
    _seed(engine, project["id"])
    assert "closed_at" not in {c["name"] for c in inspect(engine).get_columns("extra_reviewer_requests")}

    dbm.upgrade(engine)
    assert dbm.current_revision(engine) == dbm.head_revision()
    assert INDEX in {i["name"] for i in inspect(engine).get_indexes("extra_reviewer_requests")}
    with engine.connect() as conn:
        closed = dict(conn.execute(select(extra_reviewer_requests.c.item_id,
                                          extra_reviewer_requests.c.closed_at)).all())
        assert closed["i1"] is None and closed["i2"] is not None
        assert review_store.extra_reviewers_wanted(conn, project_id=project["id"]) == {"r1": 1}
    engine.dispose()

    copied = copied_by_migrate_db(path, tmp_path)
    with copied.connect() as conn:
        assert review_store.extra_reviewers_wanted(conn, project_id=project["id"]) == {"r1": 1}
        assert conn.execute(select(extra_reviewer_requests.c.closed_at)
                            .where(extra_reviewer_requests.c.item_id == "i2")).scalar_one() is not None
    copied.dispose()


def test_a_downgrade_to_0012_drops_the_column_and_the_index(tmp_path):
    engine = downgraded_to(tmp_path, "0012")
    assert "closed_at" not in {c["name"] for c in inspect(engine).get_columns("extra_reviewer_requests")}
    assert INDEX not in {i["name"] for i in inspect(engine).get_indexes("extra_reviewer_requests")}
    engine.dispose()
