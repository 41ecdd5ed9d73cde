"""The command line as a user drives it (in-process through Typer's runner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clinreason.cli import app
from clinreason.demo import samples_dir

runner = CliRunner()
VERBS = ["init", "import", "status", "demo"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("CLINREASON_DB", "CLINREASON_PROJECT", "CLINREASON_CONFIG", "CLINREASON_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_and_db_option(verb):
    result = invoke(verb, "--help")
    assert result.exit_code == 0
    if verb != "demo":
        assert "--db" in result.output and "--project" in result.output


def test_init_import_status_json(workdir):
    r = invoke("init")
    assert r.exit_code == 0 and "project 'default' created" in r.output
    assert (workdir / "clinreason.toml").exists() and (workdir / "clinreason.db").exists()
    r = invoke("import", str(samples_dir() / "medqa_sample.jsonl"))
    assert r.exit_code == 0 and "added 8 items" in r.output
    r = invoke("import", str(samples_dir() / "medqa_sample.jsonl"))
    assert "added 0 items: all 8 were already in project 'default'" in r.output
    status = json.loads(invoke("status", "--json").output)
    assert {"items", "rationales", "reviews", "by_state", "by_source", "by_model"} <= status.keys()
    assert status["items"] == 8 and status["by_source"] == {"medqa": 8} and status["by_state"]["imported"] == 8
    assert status["rationales"] == 0 and status["reviews"] == 0


def test_projects_are_separate(workdir):
    invoke("init")
    invoke("init", "--project", "zh")
    invoke("import", str(samples_dir() / "zh_sample.jsonl"), "--project", "zh")
    assert json.loads(invoke("status", "--json").output)["items"] == 0
    assert json.loads(invoke("status", "--json", "--project", "zh").output)["items"] == 4


def test_db_option_and_env_var(workdir, monkeypatch):
    other = workdir / "other.db"
    assert invoke("init", "--db", str(other)).exit_code == 0
    invoke("import", str(samples_dir() / "pubmedqa_sample.json"), "--db", str(other))
    monkeypatch.setenv("CLINREASON_DB", f"sqlite:///{other}")
    assert json.loads(invoke("status", "--json").output)["by_source"] == {"pubmedqa": 3}


def test_bad_file_gives_one_line_error_and_exit_code(workdir):
    invoke("init")
    bad = workdir / "bank.jsonl"
    bad.write_text('{"question": "Q", "options": {"A": "x", "B": "y"}, "answer": "Z"}\n')
    r = runner.invoke(app, ["import", str(bad)])
    assert r.exit_code == 1
    assert "bank.jsonl: record 1 (line 1): field 'answer'" in r.output
    assert "nothing was imported" in r.output
    assert json.loads(invoke("status", "--json").output)["items"] == 0


def test_commands_before_init_say_what_to_do(workdir):
    r = runner.invoke(app, ["status"])
    assert r.exit_code == 1 and "run `clinreason init` first" in r.output


def test_bad_map_is_a_usage_error(workdir):
    invoke("init")
    r = runner.invoke(app, ["import", "x.csv", "--map", "stem"])
    assert r.exit_code == 2 and "expected field=column" in r.output


def test_demo_runs_on_the_bundled_samples(workdir, monkeypatch):
    """The whole demo path, with the fake backend standing in for the (slow) embedded model."""
    monkeypatch.setenv("CLINREASON_LLM_BACKEND", "fake")
    r = invoke("demo", "--dir", str(workdir / "demo"), "--no-serve")
    assert r.exit_code == 0, r.output
    assert "imported the bundled samples: 25 new items" in r.output
    assert "drafted 25" in r.output and "status:" in r.output


def test_readme_cli_reference_is_current():
    from pathlib import Path

    from clinreason.cli.doc import update

    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert update(readme, check=True), "README's CLI reference is stale: run `python -m clinreason.cli.doc`"


def test_init_keeps_a_rubric_edited_in_the_browser_and_reports_what_the_file_changed(workdir):
    from clinreason.store import db, projects

    assert invoke("init").exit_code == 0
    engine = db.make_engine(str(workdir / "clinreason.db"))
    with db.transaction(engine) as conn:
        pid = projects.require_project(conn, name="default")["id"]
        edited = projects.latest_rubric(conn, project_id=pid)
        edited["dimensions"][0]["title"] = "Medical correctness (edited in the browser)"
        assert projects.add_rubric_version(conn, project_id=pid, body=edited, actor="user:root") == 2
    r = invoke("init")  # the file did not change: the browser's rubric stays current
    assert r.exit_code == 0 and "rubric version 2" in r.output and "changed" not in r.output
    toml = workdir / "clinreason.toml"
    toml.write_text(toml.read_text().replace("overlap = 2 ", "overlap = 3 "), encoding="utf-8")
    r = invoke("init")
    assert "changed review.overlap: 2 -> 3" in r.output and "rubric version 2" in r.output
    with engine.connect() as conn:
        stored = projects.project_config(conn, project_id=pid)
        assert stored["review"]["overlap"] == 3
        assert projects.latest_rubric(conn, project_id=pid)["dimensions"][0]["title"].endswith("(edited in the browser)")
    engine.dispose()


def test_a_config_file_edited_after_init_is_reported_until_init_applies_it(workdir):
    assert invoke("init").exit_code == 0
    toml = workdir / "clinreason.toml"
    toml.write_text(toml.read_text().replace("max_strikes = 5 ", "max_strikes = 4 "), encoding="utf-8")
    r = runner.invoke(app, ["status"], catch_exceptions=False)
    assert r.exit_code == 0 and "review.max_strikes: 5 -> 4" in r.stderr and "clinreason init" in r.stderr
    assert "changed review.max_strikes: 5 -> 4" in invoke("init").output
    assert "differs" not in runner.invoke(app, ["status"], catch_exceptions=False).stderr


def test_history_prints_the_items_story_as_text_and_json(workdir):
    from clinreason.store import db, items, projects

    assert invoke("init").exit_code == 0
    assert invoke("import", str(samples_dir() / "medqa_sample.jsonl")).exit_code == 0
    engine = db.make_engine(str(workdir / "clinreason.db"))
    with engine.connect() as conn:
        pid = projects.require_project(conn, name="default")["id"]
        first = items.project_items(conn, project_id=pid)[0]
    engine.dispose()
    text = invoke("history", first.id)
    assert text.exit_code == 0 and f"item {first.id} — imported" in text.output and first.question in text.output
    story = json.loads(invoke("history", first.id, "--json").output)
    assert story["item"]["id"] == first.id and story["item"]["state"] == "imported"
    assert story["versions"] == [] and story["reviews"] == [] and story["decision"] is None
    assert story["sources"][0]["source"] == "medqa"
    assert [e["kind"] for e in story["events"]][0] == "item.imported"
    assert invoke("history", "no-such-item").exit_code == 1
