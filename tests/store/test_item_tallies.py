"""The item tallies of migration 0015 (issue #16, item 4): whatever changes the items, their sources, reviews
and decisions (in bulk or row by row, through clinreason or plain SQL), `item_tallies` and `source_tallies`
hold exactly the groups that a pass over the rows finds, in the same transaction; and `stats --json` reads
the same from them as from that pass. SQLite only: PostgreSQL keeps no tallies yet (migration 0015's
docstring says why) and reads by the pass, which the last test checks."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

import pytest
from analytics import reviewdata
from sqlalchemy import delete, func, insert, select, update

from clinreason.analytics import stats as stats_module
from clinreason.store import exports
from clinreason.store import stats as stats_store
from clinreason.store.projects import ensure_project
from clinreason.store.tables import (
    decisions,
    item_sources,
    item_tallies,
    items,
    rationales,
    reviews,
    source_tallies,
)

STATES = ["imported", "drafting", "checking", "in_review", "accepted", "excluded", "failed", "flagged"]


def _groups(conn, pid):
    def key(g):
        return (g.specialty, g.state, g.decision_kind or "", g.decided_version, g.version_found, g.origin or "",
                g.reviewed, g.rounds, g.items, g.reviews)
    return sorted(map(key, stats_store.item_groups(conn, project_id=pid))), \
        sorted(map(key, stats_store.kept_item_groups(conn, project_id=pid)))


def _sources(conn, pid):
    scanned = (stats_store.item_breakdown(conn, project_id=pid, by="source"),
               sorted(stats_store.review_breakdown(conn, project_id=pid, by="source"), key=lambda r: r.key))
    return scanned, stats_store.kept_source_breakdowns(conn, project_id=pid)


def assert_tallies_match(engine, *pids):
    with engine.connect() as conn:
        for pid in pids:
            scanned, kept = _groups(conn, pid)
            assert kept == scanned, pid
            scanned_sources, kept_sources = _sources(conn, pid)
            assert kept_sources[0] == scanned_sources[0] and kept_sources[1] == scanned_sources[1], pid
            assert exports.drafting_provenance(conn, project_id=pid) == \
                [tuple(r) for r in exports.drafting_provenance_pass(conn, project_id=pid)], pid
            for kept_days, pass_days in ((stats_store.reviews_per_day, stats_store.reviews_per_day_pass),
                                         (stats_store.decisions_per_day, stats_store.decisions_per_day_pass)):
                assert kept_days(conn, project_id=pid) == pass_days(conn, project_id=pid), pid
        for table in (item_tallies, source_tallies):  # an emptied group is deleted, not left at 0
            assert conn.execute(select(func.count()).select_from(table).where(table.c.n_items == 0)).scalar_one() == 0


def _new_item(conn, pid, item_id, rng, ts):
    conn.execute(insert(items).values(
        id=item_id, project_id=pid, content_hash=hashlib.sha256(item_id.encode()).hexdigest(), question="Q?",
        options=[["A", "a"], ["B", "b"]], answer_labels=["A"], language="en",
        specialty=rng.choice([None, *reviewdata.SPECIALTIES]), meta={}, state=rng.choice(STATES), strikes=0,
        auto_retries=0, created_at=ts, updated_at=ts))


def _random_change(conn, rng, pid, built, n, ts):
    """One change of a random kind, through plain SQL (the triggers see what any writer does)."""
    kind = rng.choice(["state", "specialty", "source", "dup_source", "drop_source", "move_source", "review",
                       "version", "decision", "new_item", "drop_item"])
    ids = conn.execute(select(items.c.id).where(items.c.project_id == pid).order_by(items.c.id)).scalars().all()
    item_id = rng.choice(ids)
    if kind == "state":
        conn.execute(update(items).where(items.c.id == item_id).values(state=rng.choice(STATES)))
    elif kind == "specialty":
        conn.execute(update(items).where(items.c.id == item_id)
                     .values(specialty=rng.choice([None, "(none)", "oncology", *reviewdata.SPECIALTIES])))
    elif kind in ("source", "dup_source"):
        source = rng.choice(["medqa", "medmcqa", "cmexam"]) if kind == "source" else "medqa"
        conn.execute(insert(item_sources).values(item_id=item_id, source=source, file=f"extra{n}.jsonl",
                                                 record=str(n), imported_at=ts))
    elif kind in ("drop_source", "move_source"):
        row = conn.execute(select(item_sources.c.id).order_by(item_sources.c.id)).scalars().all()
        sid = rng.choice(row)
        if kind == "drop_source":
            conn.execute(delete(item_sources).where(item_sources.c.id == sid))
        else:
            conn.execute(update(item_sources).where(item_sources.c.id == sid)
                         .values(source=rng.choice(["medqa", "pubmedqa"]), file=f"moved{n}.jsonl"))
    elif kind in ("review", "version"):
        versions = conn.execute(select(rationales.c.id, rationales.c.version).where(rationales.c.item_id == item_id)
                                .order_by(rationales.c.version)).all()
        if kind == "version" or not versions:
            number = len(versions) + 1
            rid = f"{item_id}-x{number}-{n}"
            conn.execute(insert(rationales).values(
                id=rid, item_id=item_id, version=number, origin=rng.choice(["generated", "regenerated", "edited"]),
                author="model:m", steps=["s"], final_answer=["A"], text="Step 1: s\nFinal answer: A",
                params={}, seed=0, parse_status="ok", created_at=ts))
        else:
            rid = rng.choice(versions)[0]
        who = rng.choice(list(built.reviewer_ids.values()))
        taken = conn.execute(select(func.count()).where(reviews.c.rationale_id == rid,
                                                        reviews.c.reviewer_id == who)).scalar_one()
        if not taken:
            conn.execute(insert(reviews).values(
                id=f"x-{n}", rationale_id=rid, item_id=item_id, reviewer_id=who, verdict="accept",
                scores={d: 4 for d in reviewdata.DIMS}, comments={}, seconds_spent=30.0, rubric_version=1,
                created_at=ts))
    elif kind == "decision":
        undecided = conn.execute(select(items.c.id).where(items.c.project_id == pid).where(
            ~select(decisions.c.id).where(decisions.c.item_id == items.c.id).exists()).order_by(items.c.id)
        ).scalars().all()
        if undecided:
            target = rng.choice(undecided)
            versions = conn.execute(select(rationales.c.id).where(rationales.c.item_id == target)).scalars().all()
            how = rng.choice(["consensus", "adjudication", "excluded"])
            chosen = rng.choice(versions) if versions and how != "excluded" else None
            conn.execute(insert(decisions).values(item_id=target, kind=how, rationale_id=chosen, decided_by="t",
                                                  reason="", created_at=ts))
            conn.execute(update(items).where(items.c.id == target)
                         .values(state="excluded" if how == "excluded" else "accepted"))
    elif kind == "new_item":
        _new_item(conn, pid, f"new{n:04d}", rng, ts)
        if rng.random() < 0.8:
            for j in range(rng.choice([1, 2])):
                conn.execute(insert(item_sources).values(item_id=f"new{n:04d}", source=rng.choice(["medqa", "mmlu"]),
                                                         file="new.jsonl", record=f"{n}-{j}", imported_at=ts))
    elif kind == "drop_item":  # only an item nothing refers to can go: one just made, with a later state
        _new_item(conn, pid, f"gone{n:04d}", rng, ts)
        conn.execute(update(items).where(items.c.id == f"gone{n:04d}").values(state=rng.choice(STATES)))
        conn.execute(delete(items).where(items.c.id == f"gone{n:04d}"))


@pytest.fixture
def sqlite_only(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL keeps no item tallies yet (migration 0015): its reads group the rows")


@pytest.fixture
def two_projects(engine, project, sqlite_only):
    with engine.begin() as conn:
        other, _ = ensure_project(conn, name="other", config={}, rubric={"dimensions": []})
    built = reviewdata.build(engine, project["id"], n_items=120, seed=15)
    reviewdata.build(engine, other["id"], n_items=30, seed=3, prefix="ot",
                     reviewers=[("zed", "reviewer", []), ("yan", "reviewer", []), ("wu", "reviewer", []),
                                ("xu", "adjudicator", [])])
    return project["id"], other["id"], built


def test_bulk_inserts_are_tallied(engine, two_projects):
    pid, other, _ = two_projects
    assert_tallies_match(engine, pid, other)
    with engine.connect() as conn:
        assert sum(g.items for g in stats_store.kept_item_groups(conn, project_id=pid)) == 120
        assert sum(g.items for g in stats_store.kept_item_groups(conn, project_id=other)) == 30


def test_every_kind_of_change_keeps_the_tallies_exact(engine, two_projects):
    pid, other, built = two_projects
    rng = random.Random(1601)
    ts = reviewdata.T0 + timedelta(days=400)
    for batch in range(12):
        with engine.begin() as conn:
            for n in range(batch * 25, batch * 25 + 25):
                _random_change(conn, rng, pid, built, n, ts)
        assert_tallies_match(engine, pid, other)


def test_a_rolled_back_change_leaves_the_tallies_as_they_were(engine, two_projects):
    pid, other, built = two_projects
    with engine.connect() as conn:
        before = sorted(conn.execute(select(item_tallies)).all())
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(update(items).where(items.c.project_id == pid).values(state="failed"))
        raise RuntimeError("abandoned")
    with engine.connect() as conn:
        assert sorted(conn.execute(select(item_tallies)).all()) == before


def test_stats_read_from_the_tallies_equal_stats_from_a_pass_over_the_items(engine, two_projects, monkeypatch):
    pid, other, built = two_projects
    rng = random.Random(7)
    with engine.begin() as conn:
        for n in range(60):
            _random_change(conn, rng, pid, built, n, reviewdata.T0 + timedelta(days=500))
    with engine.connect() as conn:
        kept = stats_module.process_stats(conn, project_id=pid)
        monkeypatch.setattr(stats_store, "tallies_kept", lambda conn: False)
        scanned = stats_module.process_stats(conn, project_id=pid)
    assert kept == scanned
    assert kept["accepted"] > 0 and kept["by_source"] and kept["by_specialty"]


def test_the_upgrade_fills_the_tallies_from_the_rows_already_there(engine, two_projects):
    """Down to 0014 (tables and triggers gone; changes made there are tallied by no one), back up to head: the
    upgrade counts every group from the rows as they are, and the triggers take over from there."""
    from alembic import command
    from sqlalchemy import inspect

    from clinreason.store import db as dbm

    pid, other, built = two_projects
    with engine.begin() as conn:
        command.downgrade(dbm._alembic_config(conn), "0014")
    assert not {"item_tallies", "source_tallies"} & set(inspect(engine).get_table_names())
    rng = random.Random(14)
    with engine.begin() as conn:
        for n in range(40):
            _random_change(conn, rng, pid, built, n, reviewdata.T0 + timedelta(days=600))
    dbm.upgrade(engine)
    assert dbm.current_revision(engine) == dbm.head_revision()
    assert_tallies_match(engine, pid, other)
    with engine.begin() as conn:
        for n in range(40, 80):
            _random_change(conn, rng, pid, built, n, reviewdata.T0 + timedelta(days=601))
    assert_tallies_match(engine, pid, other)


@pytest.mark.parametrize("reader_process", [False, True], ids=["in-process", "reader-process"])
def test_imports_tally_their_items_and_sources(engine, project, sqlite_only, tmp_path, monkeypatch,
                                               reader_process):
    """An import lifts the per-row source trigger on SQLite and tallies each batch's source rows in one
    statement (store.ingest): a first import, the same questions under a second source (each a duplicate: a
    source row added to an item that has reviews by then), and a re-import (nothing added) all tally exactly,
    through the in-process writer and the reader process alike."""
    from clinreason.stages import ingest_parallel
    from clinreason.stages.ingest import import_path
    from clinreason.testing.helpers import write_synthetic_bank

    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 0 if reader_process else 10**12)
    bank = write_synthetic_bank(tmp_path / "bank.jsonl", 400)
    pid = project["id"]
    first = import_path(engine, project="default", path=bank, source="alpha")
    assert first.added == 400
    assert_tallies_match(engine, pid)
    with engine.begin() as conn:  # a few items get versions and reviews, some a decision
        built = reviewdata.Built()
        reviewdata.add_reviewers(conn, built)
        rng = random.Random(4)
        for n in range(120):
            _random_change(conn, rng, pid, built, n, reviewdata.T0)
    again = import_path(engine, project="default", path=bank, source="beta")
    assert again.added == 0 and again.sources_added == 400
    assert_tallies_match(engine, pid)
    import_path(engine, project="default", path=bank, source="alpha")
    assert_tallies_match(engine, pid)
    with engine.connect() as conn:
        by_source = {row.key: row.items for row in stats_store.kept_source_breakdowns(conn, project_id=pid)[0]}
    assert by_source["alpha"] >= 400 and by_source["beta"] == 400


def test_postgresql_keeps_no_tallies_and_reads_by_the_pass(engine, project):
    if engine.dialect.name == "sqlite":
        pytest.skip("the PostgreSQL side")
    reviewdata.build(engine, project["id"], n_items=40, seed=2)
    with engine.connect() as conn:
        assert not stats_store.tallies_kept(conn)
        assert conn.execute(select(func.count()).select_from(item_tallies)).scalar_one() == 0
        found = stats_module.process_stats(conn, project_id=project["id"])
    assert found["items"] == 40 and sum(found["by_state"].values()) == 40 and found["accepted"] > 0


def test_a_migrate_db_copy_tallies_what_it_copied(engine, two_projects, tmp_path):
    """`migrate-db` copies no tally row: the target's triggers count the items, sources, reviews and decisions
    as they arrive, and come to the source's tallies."""
    from clinreason.store import db as dbm
    from clinreason.store.migrate import migrate_database

    pid, other, built = two_projects
    with engine.begin() as conn:
        rng = random.Random(9)
        for n in range(60):
            _random_change(conn, rng, pid, built, n, reviewdata.T0 + timedelta(days=700))
    report = migrate_database(engine.url.render_as_string(hide_password=False), str(tmp_path / "copy.db"))
    assert report.committed
    copy = dbm.make_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    assert_tallies_match(copy, pid, other)
    with engine.connect() as a, copy.connect() as b:
        assert sorted(a.execute(select(item_tallies)).all()) == sorted(b.execute(select(item_tallies)).all())
        assert sorted(a.execute(select(source_tallies)).all()) == sorted(b.execute(select(source_tallies)).all())
    copy.dispose()


def test_the_drafting_provenance_read_from_the_tallies_equals_a_pass_over_the_versions(engine, two_projects,
                                                                                      monkeypatch):
    """`version_tallies` (the dataset card's models and prompts): versions inserted in bulk and one by one,
    with and without a model or prompt hash, and items moved to another project with their versions."""
    pid, other, built = two_projects
    rng = random.Random(33)
    with engine.begin() as conn:
        for n in range(80):
            _random_change(conn, rng, pid, built, n, reviewdata.T0 + timedelta(days=800))
            if n % 9 == 0:
                ids = conn.execute(select(items.c.id).where(items.c.project_id == pid).order_by(items.c.id)
                                   ).scalars().all()
                conn.execute(update(items).where(items.c.id == rng.choice(ids)).values(project_id=other))
        conn.execute(insert(rationales).values(
            id="unset-model", item_id=built.item_ids[0], version=99, origin="generated", author="model:?",
            steps=["s"], final_answer=["A"], text="t", params={}, seed=0, parse_status="ok", model=None,
            prompt_hash=None, prompt_tokens=7, completion_tokens=5, created_at=reviewdata.T0))
    with engine.connect() as conn:
        kept = {p: exports.drafting_provenance(conn, project_id=p) for p in (pid, other)}
        scanned = {p: [tuple(r) for r in exports.drafting_provenance_pass(conn, project_id=p)] for p in (pid, other)}
    assert kept == scanned
    unset = [row for row in kept[pid] if row[:3] == ("generated", None, None)]
    assert unset and unset[0][4] == 12 and len(kept[other]) > 1  # the random walk's versions carry no tokens
    assert_tallies_match(engine, pid, other)
