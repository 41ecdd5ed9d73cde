"""The dataset card: Hugging Face front matter, and every number equal to what `clinreason agreement --json`,
`status --json` and `stats --json` print — through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from analytics import reviewdata
from typer.testing import CliRunner

from clinreason.cli import app

runner = CliRunner()


@pytest.fixture
def cli(engine, project, db_url, tmp_path):
    reviewdata.build(engine, project["id"], n_items=50, seed=3)

    def invoke(*args: str) -> str:
        result = runner.invoke(app, [*args, "--db", db_url, "--config", str(tmp_path / "absent.toml")])
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke


def split_card(text: str) -> tuple[dict, str, dict]:
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    machine = json.loads(re.search(r"```json\n(.*?)\n```", body, re.S).group(1))
    return yaml.safe_load(front), body, machine


def test_card_numbers_equal_the_cli_outputs(cli, tmp_path):
    cli("export", str(tmp_path / "ds"), "--format", "jsonl", "--splits", "0.8,0.1,0.1")
    agreement = json.loads(cli("agreement", "--json"))
    status = json.loads(cli("status", "--json"))
    stats = json.loads(cli("stats", "--json"))
    front, body, machine = split_card((tmp_path / "ds" / "README.md").read_text(encoding="utf-8"))

    assert machine["agreement"] == agreement
    assert machine["status"] == status
    assert machine["stats"] == stats["project"]
    assert set(agreement["dimensions"]) == set(reviewdata.DIMS)
    section = body.split("## Agreement between experts", 1)[1].split("\n## ", 1)[0]
    for dim, block in agreement["dimensions"].items():
        assert {"alpha_ordinal", "alpha_interval", "ci95", "units"} <= set(block)
        row = next(line for line in section.splitlines() if line.startswith(f"| {dim} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{block['alpha_ordinal']:.3f}"
        assert cells[2] == f"[{block['ci95'][0]:.3f}, {block['ci95'][1]:.3f}]"
        assert cells[3] == f"{block['alpha_interval']:.3f}"
        assert cells[-1] == str(block["units"])
    verdict = agreement["verdict"]
    assert f"Fleiss' κ {verdict['fleiss_kappa']:.3f}" in body
    for state, n in status["by_state"].items():
        assert f"| {state} | {n} |" in body
    for rounds, n in stats["project"]["rounds"]["histogram"].items():
        assert f"| {rounds} | {n} |" in body
    assert f"{status['reviews']} reviews" in body
    accepted = status["by_state"]["accepted"]
    assert f"{accepted} accepted" in body and f"{accepted} exam-style clinical questions" in body

    assert front["license"] == "other" and "MIT" in front["license_name"]
    assert front["language"] == ["en", "zh"]
    assert front["size_categories"] == ["n<1K"]
    assert {"question-answering", "text-generation"} <= set(front["task_categories"])
    assert front["pretty_name"] and "medical" in front["tags"]
    files = {f["split"]: f["path"] for f in front["configs"][0]["data_files"]}
    assert files == {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}
    for section in ("Sources and licences", "The rubric", "Models and prompts", "The experts",
                    "Agreement between experts", "Review rounds", "Known limitations"):
        assert f"## {section}" in body
    assert "`ph-draft`" in body and "deepseek-r1" in body
    assert "| medqa |" in body and "research use only" in body


def test_a_single_licence_is_named_in_the_front_matter(cli, tmp_path):
    cli("export", str(tmp_path / "ds"), "--source", "medqa")
    front, body, machine = split_card((tmp_path / "ds" / "README.md").read_text(encoding="utf-8"))
    assert front["license"] == "mit" and front["language"] == ["en"]
    assert machine["export"]["filters"]["source"] == "medqa"
    assert "filters: source=medqa" in body


def test_cli_refuses_an_occupied_folder_and_reports_what_it_wrote(cli, engine, db_url, tmp_path):
    out = tmp_path / "ds"
    summary = json.loads(cli("export", str(out), "--format", "sft", "--json"))
    assert summary["files"] == ["data.jsonl", "README.md"] and summary["total"] > 0
    result = runner.invoke(app, ["export", str(out), "--db", db_url, "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 1 and "not empty" in result.output and "--force" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "x"), "--format", "csv", "--db", db_url,
                                 "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 1 and "--format" in result.output


def test_agreement_and_stats_human_output(cli):
    text = cli("agreement")
    assert "α ordinal" in text and "correctness" in text and "Fleiss" in text
    text = cli("stats")
    assert "rounds per accepted item" in text and "alice" in text


def test_an_export_keeps_the_review_scan_and_the_next_card_reads_it(engine, project, db_url, tmp_path, monkeypatch):
    """The export stores the kept scan its card used; a second export after new reviews brings it up to
    date, and its card is the card a full scan of every review gives; a database that refuses the write is
    exported all the same, with the same card."""
    import random

    from analytics.test_kept_scan import REVIEWERS, add_round, data_clock
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from clinreason.analytics import kept
    from clinreason.store.tables import scan_states

    reviewdata.build(engine, project["id"], n_items=50, seed=3, reviewers=REVIEWERS, step_judge_rate=0.5)
    monkeypatch.setattr(kept, "read_clock", data_clock)  # the rows' own timeline (see data_clock)

    def export(name: str) -> dict:
        result = runner.invoke(app, ["export", str(tmp_path / name), "--format", "jsonl", "--db", db_url,
                                     "--config", str(tmp_path / "absent.toml")])
        assert result.exit_code == 0, result.output
        card = split_card((tmp_path / name / "README.md").read_text(encoding="utf-8"))[2]
        card.pop("export", None)  # when and how long: the rest is what the reviews add up to
        return card

    def states() -> list:
        with engine.connect() as conn:
            return list(conn.execute(select(scan_states.c.revision)).scalars())

    export("a")
    first = states()
    assert len(first) == 1
    for r in range(2):  # reviews on old and new versions, new items, decisions (the kept-scan tests' rounds)
        add_round(engine, project["id"], random.Random(r), r)
    kept_card = export("b")
    assert len(states()) == 1 and states()[0] > first[0]
    with engine.begin() as conn:
        conn.execute(scan_states.delete())

    def refuses(*_a, **_k):
        raise OperationalError("UPDATE scan_states", {}, Exception("attempt to write a readonly database"))

    monkeypatch.setattr(kept, "save", refuses)
    full_card = export("c")
    assert states() == []
    assert kept_card == full_card
    assert kept_card["status"]["reviews"] > 0


def test_the_machine_readable_block_is_json_dumps_of_the_numbers(engine, project, tmp_path):
    """The card's JSON block is assembled from parts encoded once (an export of several formats renders a
    card per format): it must be the very text json.dumps(indent=1) gives for the whole."""
    from clinreason.stages.export.card import _machine_json

    numbers = {"agreement": {"α": 0.5, "dims": [{"name": "x", "ci": [0.1, 0.9]}], "empty": {}},
               "status": {"by_state": {}, "items": 3}, "stats": {"nested": {"list": [], "deep": [[1, {"a": None}]]}}}
    export = {"format": "jsonl", "rows": {"data": 3}, "text": "line\nbreak \"quoted\""}
    whole = {"agreement": numbers["agreement"], "status": numbers["status"], "stats": numbers["stats"], "export": export}
    expected = json.dumps(whole, ensure_ascii=False, indent=1)
    assert _machine_json(numbers, export) == expected
    assert _machine_json(numbers, {**export, "format": "hf"}) == json.dumps({**whole, "export": {**export, "format": "hf"}},
                                                                            ensure_ascii=False, indent=1)
