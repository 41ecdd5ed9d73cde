"""Store tests: each runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, insert, inspect, select

from clinreason.domain.lifecycle import ItemState, TransitionError
from clinreason.store import common as store_common
from clinreason.store import db
from clinreason.store import decisions as store_decisions
from clinreason.store import items as store_items
from clinreason.store import projects as store_projects
from clinreason.store import readmodels as store_readmodels
from clinreason.store.tables import events, items, metadata


def _add_item(conn, project_id: int, item_id: str = "it1", state: str = "imported") -> None:
    ts = store_common.now()
    conn.execute(insert(items).values(
        id=item_id, project_id=project_id, content_hash=item_id.ljust(64, "0"), question="q?",
        options=[["A", "x"], ["B", "y"]], answer_labels=["A"], language="en", meta={}, state=state,
        strikes=0, auto_retries=0, created_at=ts, updated_at=ts))


def test_migrations_create_exactly_the_declared_schema(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"migrations and tables.py differ: {diff}"
    assert db.current_revision(engine) == db.head_revision()
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())


def test_upgrade_is_idempotent(engine):
    db.upgrade(engine)
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()


def test_sqlite_runs_in_wal_with_foreign_keys(engine, backend_name):
    if backend_name != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_foreign_keys_are_enforced(engine, project):
    from sqlalchemy.exc import IntegrityError

    from clinreason.store.tables import item_sources

    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(insert(item_sources).values(item_id="missing", source="s", file="f", record="1",
                                                     imported_at=store_common.now()))


def test_transition_is_compare_and_set_and_writes_an_event(engine, project):
    with engine.begin() as conn:
        _add_item(conn, project["id"])
        store_items.transition_item(conn, item_id="it1", expected="imported", target="generating", actor="worker-1")
    with engine.connect() as conn:
        assert conn.execute(select(items.c.state).where(items.c.id == "it1")).scalar_one() == "generating"
        evs = store_decisions.item_events(conn, item_id="it1")
    assert [(e.kind, e.before, e.after, e.actor) for e in evs] == [
        ("item.transition", {"state": "imported"}, {"state": "generating"}, "worker-1")]
    assert evs[0].detail["reason"] == "draft requested"


def test_stale_expected_state_is_refused_and_changes_nothing(engine, project):
    with engine.begin() as conn:
        _add_item(conn, project["id"], state="generating")
    with pytest.raises(store_common.StaleStateError, match="is 'generating', not 'imported'"):
        with engine.begin() as conn:
            store_items.transition_item(conn, item_id="it1", expected="imported", target="generating", actor="w2")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events).where(events.c.item_id == "it1")).scalar() == 0


def test_forbidden_transition_is_refused_before_touching_the_row(engine, project):
    with engine.begin() as conn:
        _add_item(conn, project["id"])
    with pytest.raises(TransitionError):
        with engine.begin() as conn:
            store_items.transition_item(conn, item_id="it1", expected="imported", target="accepted", actor="x")
    with engine.connect() as conn:
        assert conn.execute(select(items.c.state).where(items.c.id == "it1")).scalar_one() == "imported"


def test_event_and_state_change_roll_back_together(engine, project):
    with engine.begin() as conn:
        _add_item(conn, project["id"])
    with pytest.raises(RuntimeError, match="boom"):
        with engine.begin() as conn:
            store_items.transition_item(conn, item_id="it1", expected="imported", target="generating", actor="w")
            raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(select(items.c.state).where(items.c.id == "it1")).scalar_one() == "imported"
        assert store_decisions.item_events(conn, item_id="it1") == []


def test_missing_item_is_reported(engine, project):
    with pytest.raises(store_common.StaleStateError, match="does not exist"):
        with engine.begin() as conn:
            store_items.transition_item(conn, item_id="nope", expected="imported", target="generating", actor="w")


def test_two_workers_racing_for_one_item_move_it_once(engine, project):
    """Eight threads try the same compare-and-set at once: exactly one wins, one event is written."""
    with engine.begin() as conn:
        _add_item(conn, project["id"])
    barrier = threading.Barrier(8)
    wins, losses = [], []

    def worker(n: int) -> None:
        barrier.wait()
        try:
            with engine.begin() as conn:
                store_items.transition_item(conn, item_id="it1", expected=ItemState.IMPORTED, target=ItemState.GENERATING,
                                     actor=f"w{n}")
            wins.append(n)
        except store_common.StaleStateError:
            losses.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    with engine.connect() as conn:
        assert len(store_decisions.item_events(conn, item_id="it1")) == 1


def test_rubric_changes_become_new_versions(engine, project):
    with engine.begin() as conn:
        body = store_projects.latest_rubric(conn, project_id=project["id"])
        assert body["version"] == 1
        assert store_projects.add_rubric_version(conn, project_id=project["id"], body=body, actor="a") == 1
        changed = {**body, "dimensions": body["dimensions"][:4]}
        assert store_projects.add_rubric_version(conn, project_id=project["id"], body=changed, actor="a") == 2
        assert len(store_projects.latest_rubric(conn, project_id=project["id"])["dimensions"]) == 4


def test_status_counts_shape(engine, project):
    with engine.begin() as conn:
        _add_item(conn, project["id"], "a")
        _add_item(conn, project["id"], "b", state="escalated")
        counts = store_readmodels.status_counts(conn, project_id=project["id"])
    assert counts["items"] == 2 and counts["rationales"] == 0 and counts["reviews"] == 0
    assert counts["by_state"]["imported"] == 1 and counts["by_state"]["escalated"] == 1
    assert set(counts["by_state"]) == {s.value for s in ItemState}
    assert counts["by_source"] == {} and counts["by_model"] == {}


def test_chinese_text_round_trips_byte_exact(engine, project):
    text_zh = "男性，58岁，突发胸骨后压榨性疼痛2小时——ST段弓背向上抬高（V1～V4）"
    with engine.begin() as conn:
        ts = store_common.now()
        conn.execute(insert(items).values(
            id="zh", project_id=project["id"], content_hash="z" * 64, question=text_zh,
            options=[["A", "急性前壁心肌梗死"], ["B", "肺栓塞"]], answer_labels=["A"], language="zh",
            meta={"备注": "测试"}, state="imported", strikes=0, auto_retries=0, created_at=ts, updated_at=ts))
    with engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.id == "zh")).mappings().one()
    assert row["question"].encode("utf-8") == text_zh.encode("utf-8")
    assert row["options"][0][1] == "急性前壁心肌梗死" and row["meta"] == {"备注": "测试"}


def test_database_url_forms():
    assert db.normalise_url("x.db") == "sqlite:///x.db"
    assert db.normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalise_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalise_url("sqlite:///a.db") == "sqlite:///a.db"


def test_history_tables_refuse_updates_and_deletes(engine, project):
    """Rationale versions, reviews, decisions and events are append-only, enforced by the database."""
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from clinreason.store.tables import rationales

    with engine.begin() as conn:
        _add_item(conn, project["id"])
        conn.execute(insert(rationales).values(
            id="r1", item_id="it1", version=1, origin="generated", author="model:x", steps=["a"], final_answer=["A"],
            text="1. a\nFinal answer: A", params={}, parse_status="ok", prompt_tokens=0, completion_tokens=0, cost=0.0,
            created_at=store_common.now()))
        store_items.transition_item(conn, item_id="it1", expected="imported", target="generating", actor="w")
    for stmt in (update(rationales).values(text="changed"), delete(rationales),
                 update(events).values(actor="someone else"), delete(events)):
        with pytest.raises(DBAPIError, match="immutable"):
            with engine.begin() as conn:
                conn.execute(stmt)
    with engine.connect() as conn:
        assert conn.execute(select(rationales.c.text)).scalar_one() == "1. a\nFinal answer: A"
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() >= 1


@pytest.mark.store
def test_upgrading_to_0006_turns_extra_reviewer_events_into_queue_state(db_url):
    """Databases from before 0006 recorded extra-reviewer requests as events only: the upgrade copies
    them into the table the queue reads, so a pending request is not lost."""
    from clinreason.store import reviews as review_store
    from clinreason.store.tables import rationales

    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine, "0005")
        with engine.begin() as conn:
            project_id = store_projects.ensure_project(conn, name="old", config={}, rubric={"dimensions": []})[0]["id"]
            _add_item(conn, project_id, state="in_review")
            conn.execute(insert(rationales).values(
                id="r1", item_id="it1", version=1, origin="generated", author="model:m", steps=["s"],
                final_answer=["A"], text="t", params={}, prompt_tokens=0, completion_tokens=0, cost=0.0,
                parse_status="ok", created_at=store_common.now()))
            store_decisions.add_event(conn, project_id=project_id, item_id="it1", kind="consensus.extra_reviewer",
                                      actor="user:bob", detail={"rationale_id": "r1", "reason": "1 of 2 accept"})
        db.upgrade(engine)
        with engine.connect() as conn:
            assert review_store.extra_reviewers_wanted(conn, project_id=project_id) == {"r1": 1}
            assert review_store.extra_reviewers_of(conn, rationale_id="r1") == 1
    finally:
        engine.dispose()
