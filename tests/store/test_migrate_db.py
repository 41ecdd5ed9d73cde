"""`clinreason migrate-db`: a whole database copied SQLite -> PostgreSQL -> SQLite (and SQLite -> SQLite),
verified table by table; exports of the copy are byte-identical to exports of the original; a non-empty
target is refused and left as it was; a failure or a mismatch midway leaves nothing on the target.

The source is a project that went through the whole loop with the real code: imported, drafted by the fake
backend, screened, reviewed (accepts, an expert edit, guided regeneration with step marks, a disagreement
settled by an extra reviewer, a flagged question, strikes run out), calibrated, adjudicated; accounts,
tokens, sessions and a login record; a privacy hold and an item edit; a second project; a draft and an
open lease left in flight. The PostgreSQL half needs CLINREASON_TEST_PG_URL (each test makes databases of
its own on that cluster) and is skipped with a message without it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, inspect, null, select, text, update
from sqlalchemy.exc import DBAPIError
from stages.conftest import gold_answer_handler
from typer.testing import CliRunner
from web.factories import PASSWORD, make_token, make_user

from clinreason.cli import app
from clinreason.config import ProjectConfig, ReviewConfig
from clinreason.demo import samples_dir
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages import adjudicate, calibration
from clinreason.stages.ingest import import_path
from clinreason.stages.review import Reviewer, assign_next_review, save_draft, submit_review
from clinreason.stages.runner import DRAFT, REGENERATE, run_llm_stage
from clinreason.stages.screen import run_screening
from clinreason.store import accounts as store_accounts
from clinreason.store import db as dbm
from clinreason.store import items as store_items
from clinreason.store import privacy as store_privacy
from clinreason.store import projects as store_projects
from clinreason.store import rationales as store_rationales
from clinreason.store.common import aware, now
from clinreason.store.decisions import add_event
from clinreason.store.migrate import MigrationError, TargetNotEmpty, database_digests, migrate_database
from clinreason.store.tables import checks, events, items, metadata, rationales, reviews, users

pytestmark = pytest.mark.store
runner = CliRunner()

GOOD = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 4, "clinical_value": 5}
POOR = {"correctness": 2, "reasoning": 3, "sufficiency": 3, "terminology": 4, "clinical_value": 3}
GROUPS = ("accept", "accept", "accept", "edit", "edit", "regenerate", "regenerate", "disagree", "flag", "strikes")
#: every table of the schema a copy writes (not those triggers derive, migration 0015): the loop leaves none empty
LOOP_TABLES = {t.name for t in metadata.sorted_tables if not t.info.get("derived")}


# --- databases ------------------------------------------------------------------------------------

def _cluster_url() -> str:
    url = os.environ.get("CLINREASON_TEST_PG_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but CLINREASON_TEST_PG_URL is not set: migrate-db must be tested on PostgreSQL too")
        pytest.skip("PostgreSQL not available: set CLINREASON_TEST_PG_URL (make test starts a throwaway cluster; "
                    "scripts/pg-test.sh start prints its URL)")
    return url


@pytest.fixture
def new_database(tmp_path) -> Iterator[Callable[[str], str]]:
    """new_database(kind) -> the URL of a fresh, empty database nobody else uses (kind: sqlite | postgresql;
    the PostgreSQL ones are created on the test cluster and dropped afterwards)."""
    made: list[str] = []
    admin = None

    def make(kind: str) -> str:
        nonlocal admin
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:8]}.db'}"
        base = _cluster_url()
        admin = admin or create_engine(base, isolation_level="AUTOCOMMIT")
        name = f"migrate_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return f"{base.rpartition('/')[0]}/{name}"

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def digests(url: str) -> dict[str, tuple[int, str]]:
    engine = dbm.make_engine(url)
    try:
        with engine.connect() as conn:
            return database_digests(conn)
    finally:
        engine.dispose()


def row_counts(url: str) -> dict[str, int]:
    """Rows per table that exists (no tables at all: {})."""
    engine = dbm.make_engine(url)
    try:
        with engine.connect() as conn:
            return {name: conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                    for name in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


def copy_sqlite(url: str, to: Path) -> str:
    src = sqlite3.connect(url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(to)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{to}"


# --- the source: a project through the whole loop -------------------------------------------------

def _script(group: str, version: int, who: str, text_now: str) -> dict:
    ok_step = [{"step": 1, "verdict": "ok"}]
    if group == "edit" and version == 1:
        return {"verdict": "edit", "scores": POOR, "comments": {"reasoning": "step 2 rewritten"},
                "edited_text": text_now.rstrip() + "\n(The expert adds: every distractor is excluded explicitly.)",
                "seconds_spent": 412.5}
    if (group == "regenerate" and version == 1) or group == "strikes":
        return {"verdict": "regenerate", "scores": POOR, "seconds_spent": 95.25,
                "comments": {"correctness": f"wrong mechanism in version {version}", "general": "redo step 1"},
                "steps": [{"step": 1, "verdict": "error", "category": "factual_error", "severity": "major",
                           "note": "the mechanism is wrong", "correction": "name the right mechanism"}]}
    if group == "disagree" and who == "ben":
        return {"verdict": "regenerate", "scores": POOR, "comments": {"general": "I disagree"}}
    if group == "flag":
        return {"verdict": "flag_question", "scores": POOR, "comments": {"general": "the gold answer looks wrong"}}
    return {"verdict": "accept", "scores": GOOD, "comments": {}, "steps": ok_step, "seconds_spent": 61.0}


def seed_whole_loop(url: str) -> dict:
    engine = dbm.make_engine(url)
    dbm.upgrade(engine)
    pc = ProjectConfig(review=ReviewConfig(max_strikes=2, settle="extra_reviewer", calibration_rate=0.5))
    backend = FakeBackend(handler=gold_answer_handler)
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", rubric=pc.rubric,
                                                   config=pc.model_dump(mode="json", exclude={"rubric"}))
        second, _ = store_projects.ensure_project(conn, name="zh", rubric=pc.rubric,
                                                  config=pc.model_dump(mode="json", exclude={"rubric"}))
    pid = project["id"]
    import_path(engine, project="default", path=samples_dir(), fmt="auto")
    import_path(engine, project="zh", path=samples_dir() / "zh_sample.jsonl", fmt="auto")
    with engine.begin() as conn:
        people = {name: make_user(conn, username=name, role=role) for name, role in
                  (("ana", "reviewer"), ("ben", "reviewer"), ("cy", "reviewer"), ("dr_adj", "adjudicator"),
                   ("boss", "admin"))}
        from clinreason.web import auth

        auth.ensure_secret(conn)
        make_token(conn, user_id=people["boss"]["id"], project_id=pid)
        auth.create_session(conn, user_id=people["ana"]["id"], project_id=pid, cfg=auth.AuthConfig(secret_key="k"))
        store_accounts.record_login_attempt(conn, username="ana", client="127.0.0.1", succeeded=True, at=now())
        store_accounts.record_login_attempt(conn, username="ana", client="10.0.0.7", succeeded=False, at=now())

    asyncio.run(run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT, limit=12))
    asyncio.run(run_screening(engine, project=project, pc=pc))
    with engine.connect() as conn:
        in_review = conn.execute(select(items.c.id).where(items.c.project_id == pid, items.c.state == "in_review")
                                 .order_by(items.c.id)).scalars().all()
    assert len(in_review) >= len(GROUPS) + 1, in_review
    group = dict(zip(in_review, GROUPS))
    with dbm.transaction(engine) as conn:  # a version of known truth, served to reviewers now and then
        calibration.mark(conn, project_id=pid, item_id=in_review[len(GROUPS)], expect="good", actor="user:boss")

    reviewers = [Reviewer(people[n]["id"], n) for n in ("ana", "ben", "cy")]
    with engine.connect() as conn:
        rubric_body = store_projects.latest_rubric(conn, project_id=pid)
    drafted = False
    for _ in range(40):
        moved = False
        for reviewer in reviewers:
            with dbm.transaction(engine) as conn:
                lease = assign_next_review(conn, project_id=pid, reviewer=reviewer, overlap=2)
                if lease is None:
                    continue
                version = store_rationales.get_version(conn, rationale_id=lease.rationale_id)
                assert version is not None
                body = _script(group.get(lease.item_id, "accept"), lease.version, reviewer.username, version.text)
                if not drafted:  # the autosave a browser makes before the submission
                    save_draft(conn, project_id=pid, assignment_id=lease.assignment_id, reviewer_id=reviewer.id,
                               body={"verdict": body["verdict"]}, seconds_spent=12.0)
                    drafted = True
            with dbm.transaction(engine) as conn:
                submit_review(conn, project_id=pid, assignment_id=lease.assignment_id, reviewer=reviewer, body=body,
                              rubric_body=rubric_body, overlap=2)
            moved = True
        with engine.connect() as conn:
            regenerating = conn.execute(select(func.count()).select_from(items)
                                        .where(items.c.state == "regenerating")).scalar_one()
        if regenerating:
            asyncio.run(run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=REGENERATE))
            asyncio.run(run_screening(engine, project=project, pc=pc))
            moved = True
        if not moved:
            break

    with dbm.transaction(engine) as conn:
        escalated = conn.execute(select(items.c.id).where(items.c.project_id == pid, items.c.state == "escalated")
                                 .order_by(items.c.id)).scalars().all()
        for item_id in escalated:
            g = group.get(item_id, "accept")
            if g == "flag":
                adjudicate.exclude(conn, project_id=pid, item_id=item_id, reason="gold answer is wrong",
                                   adjudicator="dr_adj")
            elif g == "strikes":
                adjudicate.write_final(conn, project_id=pid, item_id=item_id, adjudicator="dr_adj",
                                       text="1. The decisive finding settles it.\n2. The other options fail on it.\n"
                                            "Final answer: A")
            else:
                latest = store_rationales.latest_version(conn, item_id=item_id)
                assert latest is not None
                adjudicate.accept_version(conn, project_id=pid, item_id=item_id, rationale_id=latest.id,
                                          adjudicator="dr_adj")

    # work in flight: two more drafts, one leased with an autosaved draft
    asyncio.run(run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT, limit=2))
    asyncio.run(run_screening(engine, project=project, pc=pc))
    with dbm.transaction(engine) as conn:
        lease = assign_next_review(conn, project_id=pid, reviewer=reviewers[0], overlap=2)
        assert lease is not None
        save_draft(conn, project_id=pid, assignment_id=lease.assignment_id, reviewer_id=reviewers[0].id,
                   body={"verdict": "accept", "scores": {"correctness": 5}, "comments": {"general": "half way — 一半"}},
                   seconds_spent=33.3)
    # the privacy gate's records (its stage is exercised elsewhere): a hold resolved by editing the text
    with dbm.transaction(engine) as conn:
        held = conn.execute(select(items.c.id).where(items.c.project_id == pid, items.c.state == "imported")
                            .order_by(items.c.id).limit(1)).scalar_one()
        hold = store_privacy.add_hold(conn, project_id=pid, item_id=held, kind="draft", gate="block", status="held",
                                      resume_state="imported", endpoint="https://llm.example.org:443",
                                      findings=[{"type": "EMAIL", "start": 3, "end": 20, "score": 0.99,
                                                 "digest": "ab12"}], actor="worker:w1")
        store_items.replace_content(conn, item_id=held, actor="user:boss", reason="removed an e-mail address",
                                    changes={"question": "A 45-year-old (contact removed) presents with chest pain."})
        store_privacy.resolve_hold(conn, hold_id=hold, status="edited", actor="user:boss", reason="edited")
        # both kinds of null in a nullable JSON column, and values that differ between backends if mishandled
        add_event(conn, project_id=pid, kind="test.json_null", actor="test", before=None, after={"ü": 0.1})
        conn.execute(insert(events).values(project_id=second["id"], kind="test.sql_null", actor="test", before=null(),
                                           after={"z": [1, 2.5, "中文", None, True], "a": {"nested": -0.0}},
                                           detail={}, at=now()))
    from clinreason.analytics.kept import refresh
    refresh(engine, project_id=pid)  # the kept review scan (scan_states) that `agreement`/`stats` store
    from clinreason.analytics.reliability import evidence_model, keep_fit
    with engine.connect() as conn:
        evidence_model(conn, pid)
    assert keep_fit(engine, pid)  # the reliability fit (evidence_fits) that `stats` and /dashboard store
    with engine.connect() as conn:
        states = dict(conn.execute(select(items.c.state, func.count()).where(items.c.project_id == pid)
                                   .group_by(items.c.state)).all())
        empty = [t.name for t in metadata.sorted_tables
                 if conn.execute(select(func.count()).select_from(t)).scalar_one() == 0]
        origins = set(conn.execute(select(rationales.c.origin)).scalars())
    engine.dispose()
    assert not empty, f"the loop left these tables empty: {empty}"
    assert states.get("accepted", 0) >= 6 and states.get("excluded", 0) >= 1 and states.get("calibration") == 1
    assert {"generated", "edited", "regenerated", "adjudicated"} <= origins, origins
    return {"states": states}


@pytest.fixture(scope="module")
def source_db(tmp_path_factory) -> str:
    """The loop's database (SQLite), built once; tests copy it before they change it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('source') / 'source.db'}"
    seed_whole_loop(url)
    return url


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("CLINREASON_DB", "CLINREASON_PROJECT", "CLINREASON_CONFIG", "CLINREASON_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def export_files(url: str, out: Path, fmt: str) -> dict[str, bytes]:
    result = cli("export", str(out), "--format", fmt, "--db", url)
    assert result.exit_code == 0, result.output
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


# --- the round trip -------------------------------------------------------------------------------

@pytest.mark.parametrize("via", ["sqlite", "postgresql"])
def test_round_trip_keeps_everything_and_exports_byte_identical(via, source_db, new_database, workdir):
    middle, back = new_database(via), new_database("sqlite")
    first = cli("migrate-db", "--from", source_db, "--to", middle, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["ok"] and report["committed"] and report["mismatched"] == []
    tables = {t["table"]: t for t in report["tables"]}
    assert set(tables) == LOOP_TABLES | {"alembic_version"}
    assert all(t["ok"] and t["rows"] == t["target_rows"] and t["source_hash"] == t["target_hash"]
               for t in tables.values())
    assert all(tables[name]["rows"] > 0 for name in LOOP_TABLES)
    assert report["rows"] == sum(t["rows"] for name, t in tables.items() if name != "alembic_version")

    second = cli("migrate-db", "--db", middle, "--to", back)  # --from defaults to --db; the table, in text
    assert second.exit_code == 0, second.output
    lines = second.output.splitlines()
    assert lines[1].split() == ["table", "rows", "source_hash", "target_hash", "ok"]
    body = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert set(body) == set(tables) and all(cols[-1] == "ok" for cols in body.values())
    assert all(body[name][2] == tables[name]["source_hash"][:16] == body[name][3] for name in tables)
    assert lines[-1].startswith(f"copied {report['rows']:,} rows in {len(LOOP_TABLES)} tables") and "committed" in lines[-1]

    # the same content, hash for hash, in all three databases (hashes are backend-independent)
    assert digests(source_db) == digests(middle) == digests(back)
    assert {name: v[1] for name, v in digests(source_db).items()} == {n: t["source_hash"] for n, t in tables.items()}

    for fmt in ("jsonl", "parquet"):
        original = export_files(source_db, workdir / f"src-{fmt}", fmt)
        assert export_files(back, workdir / f"back-{fmt}", fmt) == original
        assert export_files(middle, workdir / f"mid-{fmt}", fmt) == original
        assert {"README.md", ".clinreason-export.json"} <= original.keys() and len(original) >= 3


def test_sql_null_json_null_key_order_and_timestamps_survive_the_round_trip(source_db, new_database):
    middle, back = new_database("postgresql"), new_database("sqlite")
    assert migrate_database(source_db, middle).committed and migrate_database(middle, back).committed
    seen = []
    for url in (source_db, middle, back):
        engine = dbm.make_engine(url)
        with engine.connect() as conn:
            kinds = dict(conn.execute(select(events.c.kind, events.c.before.is_(None))
                                      .where(events.c.kind.in_(["test.json_null", "test.sql_null"]))).all())
            after = conn.execute(select(events.c.after).where(events.c.kind == "test.sql_null")).scalar_one()
            stamps = [aware(s) for s in conn.execute(select(reviews.c.created_at).order_by(reviews.c.id)).scalars()]
            fingerprints = conn.execute(select(rationales.c.fingerprint).order_by(rationales.c.id)).scalars().all()
        engine.dispose()
        assert kinds == {"test.json_null": False, "test.sql_null": True}, url  # JSON null is not SQL NULL
        assert list(after) == ["z", "a"] and after["z"] == [1, 2.5, "中文", None, True]  # key order kept
        seen.append((stamps, fingerprints))
    assert seen[0] == seen[1] == seen[2]
    assert any(s.microsecond for s in seen[0][0]) and any(f is not None and f < 0 for f in seen[0][1])


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_the_copy_stays_immutable_and_hands_out_fresh_ids(target, source_db, new_database):
    url = new_database(target)
    assert migrate_database(source_db, url).committed
    engine = dbm.make_engine(url)
    try:
        for stmt in (update(reviews).values(verdict="accept"), update(rationales).values(text="changed")):
            with pytest.raises(DBAPIError, match="immutable"):
                with engine.begin() as conn:
                    conn.execute(stmt)
        with engine.begin() as conn:  # the sequences were set past the copied ids: new rows get new ids
            before = conn.execute(select(func.max(events.c.id))).scalar_one()
            add_event(conn, project_id=1, kind="after.migration", actor="test")
            assert conn.execute(select(func.max(events.c.id))).scalar_one() == before + 1
            uid = conn.execute(insert(users).values(username="newcomer", role="reviewer", specialties=[],
                                                    password_hash="x", active=True, created_at=now())
                               .returning(users.c.id)).scalar_one()
            assert uid > 5
    finally:
        engine.dispose()


# --- refusals and failures --------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_non_empty_target_is_refused_naming_the_table_and_left_untouched(target, source_db, new_database,
                                                                            workdir):
    url = new_database(target)
    engine = dbm.make_engine(url)
    dbm.upgrade(engine)
    with engine.begin() as conn:
        make_user(conn, username="someone", password=PASSWORD)
    engine.dispose()
    before = digests(url)
    result = runner.invoke(app, ["migrate-db", "--from", source_db, "--to", url])
    assert result.exit_code == 1
    assert "not empty: table users has rows" in result.output
    assert digests(url) == before
    as_json = runner.invoke(app, ["migrate-db", "--from", source_db, "--to", url, "--json"])
    assert as_json.exit_code == 1 and "table users has rows" in json.loads(as_json.stdout)["error"]
    with pytest.raises(TargetNotEmpty) as refused:
        migrate_database(source_db, url)
    assert refused.value.table == "users" and digests(url) == before


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_failure_midway_leaves_the_target_empty(target, source_db, new_database):
    url = new_database(target)
    seen: list[str] = []

    def crash(table: str, rows: int) -> None:
        seen.append(table)
        if table == "reviews":  # the last table in foreign-key order: everything before it is copied
            raise RuntimeError("the disk is full")

    with pytest.raises(RuntimeError, match="disk is full"):
        migrate_database(source_db, url, batch_size=3, progress=crash)
    assert {"items", "rationales", "events", "checks"} <= set(seen)
    if target == "sqlite":
        assert not Path(url.removeprefix("sqlite:///")).exists()  # the file this call created is gone again
    else:
        assert row_counts(url) == {}  # not even the schema: the upgrade was in the same transaction
    # an empty target that already had the schema keeps it, and stays empty
    engine = dbm.make_engine(url)
    dbm.upgrade(engine)
    engine.dispose()
    with pytest.raises(RuntimeError, match="disk is full"):
        migrate_database(source_db, url, batch_size=3, progress=crash)
    assert {name: n for name, n in row_counts(url).items() if n} == {"alembic_version": 1}


def test_a_row_postgresql_refuses_rolls_the_whole_copy_back(source_db, new_database, tmp_path):
    """SQLite does not enforce VARCHAR lengths; PostgreSQL does: the copy fails at that row, naming the
    table, and nothing of what came before it stays on the target."""
    src = copy_sqlite(source_db, tmp_path / "bad.db")
    engine = dbm.make_engine(src)
    with engine.begin() as conn:
        zed = make_user(conn, username="zed")
        rid = conn.execute(select(rationales.c.id, rationales.c.item_id).limit(1)).one()
        conn.execute(insert(reviews).values(id="bad-review", rationale_id=rid.id, item_id=rid.item_id,
                                            reviewer_id=zed["id"], verdict="x" * 30, scores={}, comments={},
                                            rubric_version=1, created_at=now()))
    engine.dispose()
    url = new_database("postgresql")
    with pytest.raises(MigrationError, match=r"copying table reviews failed .*(too long|character varying)"):
        migrate_database(src, url, batch_size=50)
    assert row_counts(url) == {}


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_mismatch_is_reported_and_rolled_back(target, source_db, new_database, workdir):
    """A target that alters what it is given (here a trigger of someone else's) fails the verification:
    exit code 1, the table named, nothing committed."""
    url = new_database(target)
    engine = dbm.make_engine(url)
    dbm.upgrade(engine)
    with engine.begin() as conn:
        if target == "sqlite":
            conn.exec_driver_sql("CREATE TRIGGER tamper AFTER INSERT ON checks BEGIN "
                                 "UPDATE checks SET detail = 'tampered' WHERE id = NEW.id; END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION tamper() RETURNS trigger AS $$ BEGIN NEW.detail := 'tampered'; "
                                 "RETURN NEW; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER tamper BEFORE INSERT ON checks FOR EACH ROW "
                                 "EXECUTE FUNCTION tamper()")
    engine.dispose()
    result = runner.invoke(app, ["migrate-db", "--from", source_db, "--to", url])
    assert result.exit_code == 1
    checks_line = next(line for line in result.output.splitlines() if line.startswith("checks "))
    assert checks_line.split()[-1] == "MISMATCH"
    assert "1 table(s) differ after the copy (checks): rolled back" in result.output
    assert {name: n for name, n in row_counts(url).items() if n} == {"alembic_version": 1}
    report = migrate_database(source_db, url)
    assert not report.committed and report.mismatched == ["checks"]
    assert [t.ok for t in report.tables if t.table == "items"] == [True]


def test_what_is_refused_before_anything_happens(source_db, new_database, tmp_path):
    with pytest.raises(MigrationError, match="same database"):
        migrate_database(source_db, source_db.replace("sqlite:///", ""))
    with pytest.raises(MigrationError, match="no such SQLite database"):
        migrate_database(str(tmp_path / "missing.db"), new_database("sqlite"))
    assert not (tmp_path / "missing.db").exists()
    old = new_database("sqlite")
    engine = dbm.make_engine(old)
    dbm.upgrade(engine, "0005")
    engine.dispose()
    target = new_database("sqlite")
    with pytest.raises(MigrationError, match="schema revision 0005.*upgrade the source first"):
        migrate_database(old, target)
    assert not Path(target.removeprefix("sqlite:///")).exists()
    result = runner.invoke(app, ["migrate-db", "--from", source_db, "--to", source_db])
    assert result.exit_code == 1 and "same database" in result.output


def test_counts_and_hashes_do_not_depend_on_the_batch_size(source_db, new_database):
    a, b = new_database("sqlite"), new_database("sqlite")
    ra, rb = migrate_database(source_db, a, batch_size=1), migrate_database(source_db, b, batch_size=10_000)
    assert ra.committed and rb.committed
    assert [(t.table, t.source_rows, t.source_hash) for t in ra.tables] == \
           [(t.table, t.source_rows, t.source_hash) for t in rb.tables]
    engine = dbm.make_engine(a)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(checks)).scalar_one() == \
               next(t.source_rows for t in ra.tables if t.table == "checks")
    engine.dispose()
