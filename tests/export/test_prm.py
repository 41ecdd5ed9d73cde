"""Step marks in exports: `--format prm` (one record per reviewed version of each accepted item, every step
labelled error / ok / null), `rejected_error_steps` on DPO pairs, the marks in `--with-history`, in Parquet,
in the card, and on the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from analytics import reviewdata
from sqlalchemy import insert
from typer.testing import CliRunner

from clinreason.domain.records import Review
from clinreason.stages.export import ExportError, ExportOptions, run_export
from clinreason.store import decisions as store_decisions
from clinreason.store import reviews as store_reviews
from clinreason.store.tables import items, rationales

SCORES = dict.fromkeys(reviewdata.DIMS, 4)
UNSAFE = {"verdict": "error", "category": "unsafe", "severity": "critical", "note": "heparin before aspirin harms",
          "correction": "Give aspirin first."}
FACTUAL = {"verdict": "error", "category": "factual_error", "severity": "major", "note": "dose is wrong"}
LEAP = {"verdict": "error", "category": "logical_leap", "severity": "minor", "note": "jumps to the answer"}
MISREAD = {"verdict": "error", "category": "misread_stem", "severity": "major", "note": "the patient is 16"}
OK = {"verdict": "ok"}


def _steps(item_id: str, v: int) -> list[str]:
    return [f"{item_id} v{v}: chest pain suggests ACS.", f"{item_id} v{v}: aspirin is given first.",
            f"{item_id} v{v}: so the answer is A."]


class Scenario:
    """Items written through the store: versions, reviews (with step marks) and decisions."""

    def __init__(self, engine, project_id: int):
        self.engine, self.project_id = engine, project_id
        self.built = reviewdata.Built()
        with engine.begin() as conn:
            reviewdata.add_reviewers(conn, self.built)
        self.n = 0

    def item(self, item_id: str, state: str, versions: list[dict[str, list[dict] | None]],
             decision: tuple[str, int] | None = None, question: str | None = None) -> None:
        """`versions`: per version, reviewer -> marks (None: reviewed without marks); an empty dict is a
        version nobody reviewed. `decision`: (kind, accepted version)."""
        ts = reviewdata.T0 + timedelta(hours=self.n)
        self.n += 1
        with self.engine.begin() as conn:
            conn.execute(insert(items).values(
                id=item_id, project_id=self.project_id, content_hash=item_id.ljust(64, "0"),
                question=question or f"{item_id}: a 60-year-old with chest pain. First drug?",
                options=[["A", "Aspirin"], ["B", "Heparin"], ["C", "Morphine"]], answer_labels=["A"],
                language="en", specialty="cardiology", meta={}, state=state, strikes=0, auto_retries=0,
                created_at=ts, updated_at=ts))
            for v, reviews in enumerate(versions, 1):
                steps = _steps(item_id, v)
                conn.execute(insert(rationales).values(
                    id=f"{item_id}-v{v}", item_id=item_id, version=v, parent_version=v - 1 if v > 1 else None,
                    origin="generated" if v == 1 else "regenerated", author="model:deepseek-r1", steps=steps,
                    final_answer=["A"] if v > 1 else ["B"], text="\n".join(steps), model="deepseek-r1",
                    params={}, prompt_hash="ph", parse_status="ok", prompt_tokens=1, completion_tokens=1,
                    cost=0.0, created_at=ts + timedelta(minutes=v)))
                for who, marks in reviews.items():
                    store_reviews.add_review(conn, Review(
                        id=f"{item_id}-v{v}-{who}", rationale_id=f"{item_id}-v{v}", item_id=item_id,
                        reviewer_id=self.built.reviewer_ids[who], verdict="accept" if decision else "regenerate",
                        scores=SCORES, seconds_spent=60.0, created_at=ts + timedelta(minutes=v, seconds=1),
                        steps=[{"step": s, **m} for s, m in (marks or [])]))
            if decision:
                kind, accepted = decision
                store_decisions.add_decision(conn, item_id=item_id, kind=kind,
                                             rationale_id=None if kind == "excluded" else f"{item_id}-v{accepted}",
                                             decided_by="consensus" if kind == "consensus" else "user:erin", reason="")


@pytest.fixture
def scenario(engine, project) -> Scenario:
    sc = Scenario(engine, project["id"])
    # rejected v1 (step 2 flagged twice, step 1 ok, step 3 unjudged), accepted v2 (step 1 ok, the rest unmarked)
    sc.item("acc1", "accepted", [{"alice": [(1, OK), (2, UNSAFE)], "bob": [(2, FACTUAL)]},
                                 {"alice": [(1, OK)], "bob": None}], decision=("consensus", 2))
    # the adjudicator kept v1 although bob flagged its step 3; v2 was rejected; v3 was never reviewed
    sc.item("adj1", "accepted", [{"alice": None, "bob": [(3, LEAP)]}, {"alice": [(1, MISREAD)], "bob": None}, {}],
            decision=("adjudication", 1))
    # items not accepted: their marks stay out of every export
    sc.item("open1", "in_review", [{"alice": [(1, UNSAFE)], "bob": [(1, UNSAFE)]}])
    sc.item("exc1", "excluded", [{"carol": [(2, FACTUAL)], "dave": [(2, FACTUAL)]}], decision=("excluded", 1))
    return sc


def export(engine, out: Path, **kw):
    return run_export(engine, project="default", out=out, opts=ExportOptions(**kw))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _labels(record: dict) -> list[str | None]:
    return [s["label"] for s in record["steps"]]


def test_prm_labels_every_step_of_every_reviewed_version(engine, scenario, tmp_path):
    summary = export(engine, tmp_path / "prm", fmt="prm")
    records = read_jsonl(tmp_path / "prm" / "data.jsonl")
    assert [(r["item_id"], r["version"]) for r in records] == [("acc1", 1), ("acc1", 2), ("adj1", 1), ("adj1", 2)]
    by = {(r["item_id"], r["version"]): r for r in records}
    for r in records:
        assert list(r) == ["item_id", "version", "prompt", "steps", "final_answer", "accepted"]
        assert [s["text"] for s in r["steps"]] == _steps(r["item_id"], r["version"])
        assert r["prompt"].startswith(f"{r['item_id']}: a 60-year-old with chest pain. First drug?")
        assert "A. Aspirin\nB. Heparin\nC. Morphine" in r["prompt"]
        assert r["final_answer"] == (["A"] if r["version"] > 1 else ["B"])

    rejected = by[("acc1", 1)]
    assert rejected["accepted"] is False
    assert _labels(rejected) == ["ok", "error", None]  # step 3: nobody judged it, and v1 was not accepted
    assert rejected["steps"][1]["marks"] == [
        {"category": "unsafe", "severity": "critical", "note": "heparin before aspirin harms"},
        {"category": "factual_error", "severity": "major", "note": "dose is wrong"}]
    assert rejected["steps"][0]["marks"] == [] and rejected["steps"][2]["marks"] == []

    accepted = by[("acc1", 2)]
    assert accepted["accepted"] is True and _labels(accepted) == ["ok", "ok", "ok"]

    kept_by_adjudicator = by[("adj1", 1)]
    assert kept_by_adjudicator["accepted"] is True
    assert _labels(kept_by_adjudicator) == ["ok", "ok", "error"]  # an error mark wins over acceptance
    assert kept_by_adjudicator["steps"][2]["marks"] == [
        {"category": "logical_leap", "severity": "minor", "note": "jumps to the answer"}]
    assert _labels(by[("adj1", 2)]) == ["error", None, None] and by[("adj1", 2)]["accepted"] is False

    assert summary.records == {"data": 4} and summary.total == 2
    assert summary.to_dict()["step_labels"] == {"ok": 6, "error": 3, "unknown": 3}


def test_prm_keeps_items_not_accepted_out(engine, scenario, tmp_path):
    export(engine, tmp_path / "prm", fmt="prm", with_history=True)
    text = (tmp_path / "prm" / "data.jsonl").read_text(encoding="utf-8")
    assert "open1" not in text and "exc1" not in text


def test_prm_splits_follow_the_items(engine, scenario, tmp_path):
    for n in range(30):
        scenario.item(f"many{n:02d}", "accepted", [{"alice": [(1, FACTUAL)], "bob": [(1, OK)]},
                                                   {"alice": None, "bob": [(2, OK)]}], decision=("consensus", 2))
    summary = export(engine, tmp_path / "prm", fmt="prm", splits=(0.5, 0.5))
    export(engine, tmp_path / "rows", splits=(0.5, 0.5))
    split_of_item = {row["id"]: name for name in ("train", "test")
                     for row in read_jsonl(tmp_path / "rows" / f"{name}.jsonl")}
    seen = []
    for name in ("train", "test"):
        records = read_jsonl(tmp_path / "prm" / f"{name}.jsonl")
        assert records, name
        assert all(split_of_item[r["item_id"]] == name for r in records)
        assert summary.records[name] == len(records)
        seen += [(r["item_id"], r["version"]) for r in records]
    assert sorted(seen) == sorted((i, v) for i in split_of_item for v in (1, 2))
    assert summary.rows == {k: sum(1 for s in split_of_item.values() if s == k) for k in ("train", "test")}


def test_prm_reruns_are_byte_identical(engine, scenario, tmp_path):
    export(engine, tmp_path / "a", fmt="prm", splits=(0.5, 0.5))
    export(engine, tmp_path / "b", fmt="prm", splits=(0.5, 0.5), chunk_size=1)
    for name in ("train.jsonl", "test.jsonl", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_mark_outside_the_version_names_the_record(engine, scenario, tmp_path):
    with engine.begin() as conn:  # a mark on step 7 of a 3-step version (the API refuses it; a bad import may not)
        store_reviews.add_review(conn, Review(id="stray", rationale_id="acc1-v2", item_id="acc1",
                                              reviewer_id=scenario.built.reviewer_ids["carol"], verdict="accept",
                                              scores=SCORES, steps=[{"step": 7, **OK}]))
    with pytest.raises(ExportError, match=r"item acc1, version 2: a review by R-[0-9a-f]{8} marks step 7 "
                                          r"\(reviews.steps\[0\].step\) but the version has 3 step"):
        export(engine, tmp_path / "prm", fmt="prm")


def test_dpo_pairs_name_the_rejected_steps_experts_flagged(engine, scenario, tmp_path):
    export(engine, tmp_path / "dpo", fmt="dpo")
    pairs = {p["id"]: p for p in read_jsonl(tmp_path / "dpo" / "data.jsonl")}
    assert set(pairs) == {"acc1:v1>v2", "adj1:v2>v1"}
    assert pairs["acc1:v1>v2"]["rejected_error_steps"] == [2]
    assert pairs["adj1:v2>v1"]["rejected_error_steps"] == [1]
    for p in pairs.values():
        assert list(p)[-2:] == ["rejected_verdicts", "rejected_error_steps"]


def test_dpo_pair_of_an_unmarked_draft_has_no_error_steps(engine, project, tmp_path):
    sc = Scenario(engine, project["id"])
    sc.item("plain", "accepted", [{"alice": None, "bob": [(1, OK)]}, {"alice": None, "bob": None}],
            decision=("consensus", 2))
    export(engine, tmp_path / "dpo", fmt="dpo")
    (pair,) = read_jsonl(tmp_path / "dpo" / "data.jsonl")
    assert pair["rejected_error_steps"] == []


def test_history_carries_each_reviews_marks(engine, scenario, tmp_path):
    export(engine, tmp_path / "h", with_history=True)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "h" / "data.jsonl")}
    v1 = rows["acc1"]["history"][0]
    assert [r["steps"] for r in v1["reviews"]] == [
        [{"step": 1, "verdict": "ok"}, {"step": 2, **UNSAFE}],  # alice (reviewers in id order)
        [{"step": 2, **FACTUAL}]]  # bob
    assert [r["steps"] for r in rows["acc1"]["history"][1]["reviews"]] == [[{"step": 1, "verdict": "ok"}], []]
    assert [r["steps"] for r in rows["acc1"]["scores"]["reviews"]] == [[{"step": 1, "verdict": "ok"}], []]
    assert rows["adj1"]["history"][2]["reviews"] == []


def test_parquet_history_holds_the_marks_typed(engine, scenario, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    export(engine, tmp_path / "p", fmt="parquet", with_history=True)
    table = pq.read_table(tmp_path / "p" / "data.parquet")
    rows = {r["id"]: r for r in table.to_pylist()}
    marks = rows["acc1"]["history"][0]["reviews"][0]["steps"]
    assert marks == [{"step": 1, "verdict": "ok", "category": None, "severity": None, "note": None,
                      "correction": None}, {"step": 2, **UNSAFE}]
    assert str(table.schema.field("history").type.value_type.field("reviews").type.value_type
               .field("steps").type.value_type.field("step").type) == "int64"


def test_the_card_describes_the_prm_labels_and_step_agreement(engine, scenario, tmp_path):
    export(engine, tmp_path / "prm", fmt="prm")
    card = (tmp_path / "prm" / "README.md").read_text(encoding="utf-8")
    assert "path: data.jsonl" in card
    assert ("process labels: 4 reviewed rationale versions of these items (data 4), 12 steps: 3 `error`"
            in card) and "6 `ok`" in card and "3 `null`" in card
    # doubly judged: acc1 v1 step 2 (error, error), open1 v1 step 1 (error, error), exc1 v1 step 2 (error, error);
    # nothing varies, so α is undefined, and every flagged step was confirmed
    assert "3 such steps): Krippendorff's α (nominal, ok/error) —; of the steps one expert flagged as an error, " \
           "100.0 % were flagged by a second expert too." in card
    machine = json.loads(card.split("```json", 1)[1].split("```", 1)[0])
    assert machine["agreement"]["steps"] == {"alpha_nominal": None, "units": 3, "both_flagged_share": 1.0}
    assert machine["export"]["step_labels"] == {"ok": 6, "error": 3, "unknown": 3}


def test_cli_exports_prm(engine, scenario, db_url, tmp_path, monkeypatch):
    from clinreason.cli import app

    monkeypatch.chdir(tmp_path)
    for var in ("CLINREASON_DB", "CLINREASON_PROJECT", "CLINREASON_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    assert "jsonl|parquet|hf|sft|dpo|prm" in runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"}).output
    result = runner.invoke(app, ["export", str(tmp_path / "out"), "--format", "prm", "--db", db_url],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "exported 2 item(s) as prm" in result.output
    assert "4 reviewed versions, step labels ok 6, error 3, unknown 3" in result.output
    assert len(read_jsonl(tmp_path / "out" / "data.jsonl")) == 4
