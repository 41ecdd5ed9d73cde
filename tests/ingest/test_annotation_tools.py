"""Importing what annotation tools export, written here as those tools write it: an Argilla 2.x
`Dataset.to_disk` folder and a Label Studio JSON export. Questions through `--map`; a suggestion or
prediction becomes a drafted version (its agent / model_version the model); responses / annotations become
reviews (rating questions -> rubric dimensions with `--map-question`, text questions -> comments), their
annotators inactive reviewer accounts that cannot sign in. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinreason.domain.lifecycle import replay
from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store import decisions as store_decisions
from clinreason.store import rationales as store_rationales
from clinreason.store.tables import events, item_sources, items, rationales, reviews, users
from clinreason.web.auth import verify_password

RUBRIC_DIMS = ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value"]


def _counts(engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (items, item_sources, events, rationales, reviews, users))


def _question(q_name: str, kind: str, **settings) -> dict:
    return {"id": "5d5a4ad2-0000-4000-8000-00000000000" + str(len(q_name) % 10), "name": q_name, "title": q_name,
            "description": None, "required": kind == "rating", "settings": {"type": kind, **settings},
            "inserted_at": "2024-06-01T10:00:00", "updated_at": "2024-06-01T10:00:00", "dataset_id": None}


def argilla_folder(path: Path, records: list[dict]) -> Path:
    (path / ".argilla").mkdir(parents=True)
    settings = {
        "guidelines": "Rate the reasoning.", "allow_extra_metadata": True,
        "fields": [{"name": n, "title": n, "required": n == "prompt", "settings": {"type": "text", "use_markdown": False}}
                   for n in ("prompt", "choices", "gold")],
        "questions": [_question("accuracy", "rating", options=[{"value": v} for v in range(1, 6)]),
                      _question("logic", "rating", options=[{"value": v} for v in range(1, 6)]),
                      _question("notes", "text", use_markdown=False),
                      _question("decision", "label_selection",
                                options=[{"value": "accept", "text": "accept"}, {"value": "regenerate",
                                                                                 "text": "regenerate"}]),
                      _question("cot", "text", use_markdown=True)],
        "metadata": [], "vectors": []}
    (path / ".argilla" / "settings.json").write_text(json.dumps(settings))
    (path / ".argilla" / "dataset.json").write_text(json.dumps({"id": None, "name": "medical-cot", "status": "ready",
                                                                "guidelines": None, "allow_extra_metadata": True}))
    (path / "records.json").write_text(json.dumps(records))
    return path


U1, U2 = "0d3c3e4e-1b8a-4a4e-9f0d-6f6d1c7a2b11", "6a1f0c2d-58b3-4b9e-8c0a-2e1d3f4a5b22"

ARGILLA_RECORDS = [
    {"id": "rec-1", "fields": {"prompt": "A 70-year-old with crushing chest pain. First drug?",
                               "choices": "A. Aspirin\nB. Heparin\nC. Morphine", "gold": "A"},
     "metadata": {"exam": "2019"},
     "suggestions": {"cot": {"value": "Step 1: ACS is likely.\nStep 2: aspirin reduces mortality.\nFinal answer: A",
                             "score": 0.9, "agent": "gpt-4o-2024-08-06"}},
     "responses": {"accuracy": [{"value": 5, "user_id": U1}, {"value": 2, "user_id": U2}],
                   "logic": [{"value": 4, "user_id": U1}, {"value": 2, "user_id": U2}],
                   "notes": [{"value": "Clear and correct.", "user_id": U1}],
                   "decision": [{"value": "accept", "user_id": U1}]},
     "vectors": {}, "_server_id": "2f3e0000-0000-4000-8000-000000000001"},
    {"id": "rec-2", "fields": {"prompt": "Child with absence seizures. Drug of choice?",
                               "choices": "A. Carbamazepine\nB. Ethosuximide", "gold": "B"},
     "metadata": {}, "suggestions": {}, "responses": {}, "vectors": {}, "_server_id": None},
]
ARGILLA_FLAGS = {"mapping": {"question": "prompt", "options": "choices", "answer": "gold", "rationale": "cot"},
                 "question_map": {"accuracy": "correctness", "logic": "reasoning", "decision": "verdict"}}


def _imp(engine, path, fmt, **kw):
    return import_path(engine, project="default", path=Path(path), fmt=fmt, **kw)


def test_argilla_folder_brings_questions_drafts_reviews_and_reviewers(engine, project, tmp_path):
    folder = argilla_folder(tmp_path / "medical-cot", ARGILLA_RECORDS)
    s = _imp(engine, folder, "auto", **ARGILLA_FLAGS)
    assert s.files == ["medical-cot (argilla)"]
    assert (s.added, s.annotations.versions, s.annotations.reviews, s.annotations.reviewers_created) == (2, 1, 2, 2)
    assert s.annotations.verdicts_derived == 1
    with engine.connect() as conn:
        by_q = {r["question"]: r for r in conn.execute(select(items)).mappings()}
        acs = by_q["A 70-year-old with crushing chest pain. First drug?"]
        version = store_rationales.latest_version(conn, item_id=acs["id"])
        revs = conn.execute(select(reviews, users.c.username, users.c.active, users.c.password_hash)
                            .join(users, users.c.id == reviews.c.reviewer_id)).mappings().all()
        evs = store_decisions.item_events(conn, item_id=acs["id"])
    assert dict(acs["options"])["A"] == "Aspirin" and acs["answer_labels"] == ["A"]
    assert acs["meta"]["exam"] == "2019" and acs["meta"]["source_id"] == "rec-1"
    assert version.model == "gpt-4o-2024-08-06" and version.author == "model:gpt-4o-2024-08-06"
    assert version.origin == "generated" and version.version == 1 and version.final_answer == ["A"]
    assert version.text.startswith("Step 1: ACS is likely.")
    by_user = {r["username"]: r for r in revs}
    assert set(by_user) == {f"{U1}@argilla", f"{U2}@argilla"}
    first, second = by_user[f"{U1}@argilla"], by_user[f"{U2}@argilla"]
    assert first["scores"] == {"correctness": 5, "reasoning": 4} and first["verdict"] == "accept"
    assert first["comments"] == {"general": "Clear and correct."}
    assert second["verdict"] == "regenerate"  # no verdict given: derived from the scores, which fail the rubric
    assert all(r["rationale_id"] == version.id for r in revs)
    for r in revs:  # an imported name can never sign in
        assert r["active"] is False and verify_password(r["password_hash"], "")[0] is False
    # an item that arrives with a draft waits for screening, as any new draft; its log replays
    assert acs["state"] == "screening" and by_q["Child with absence seizures. Drug of choice?"]["state"] == "imported"
    assert replay(evs).value == "screening"
    assert [e.kind for e in evs][:2] == ["item.imported", "item.annotations_imported"]


def test_argilla_reimport_adds_nothing(engine, project, tmp_path):
    folder = argilla_folder(tmp_path / "ds", ARGILLA_RECORDS)
    _imp(engine, folder, "argilla", **ARGILLA_FLAGS)
    before = _counts(engine)
    again = _imp(engine, folder, "argilla", **ARGILLA_FLAGS)
    assert (again.added, again.annotations.versions, again.annotations.reviews) == (0, 0, 0)
    assert again.annotations.skipped_records == 1
    assert _counts(engine)[3:] == before[3:]  # no version, review or account added


def test_argilla_refusals_name_what_to_pass(engine, project, tmp_path):
    folder = argilla_folder(tmp_path / "ds", ARGILLA_RECORDS)
    before = _counts(engine)
    with pytest.raises(ImportAborted, match=r"rating question 'accuracy' is not a rubric dimension: pass "
                                            r"--map-question accuracy=DIMENSION"):
        _imp(engine, folder, "argilla", mapping=ARGILLA_FLAGS["mapping"])
    with pytest.raises(ImportAborted, match=r"--map-question accuracy=accuracy: 'accuracy' is not a rubric dimension"):
        _imp(engine, folder, "argilla", mapping=ARGILLA_FLAGS["mapping"],
             question_map={**ARGILLA_FLAGS["question_map"], "accuracy": "accuracy"})
    bad = [dict(ARGILLA_RECORDS[0], responses={"accuracy": [{"value": 9, "user_id": U1}]})]
    other = argilla_folder(tmp_path / "bad", bad)
    with pytest.raises(ImportAborted, match=r"bad: record 1 \(id rec-1\): field 'responses.accuracy\[0\]': "
                                            r"expected a score 1-5 for 'correctness', got 9"):
        _imp(engine, other, "argilla", **ARGILLA_FLAGS)
    no_draft = [dict(ARGILLA_RECORDS[0], suggestions={})]
    with pytest.raises(ImportAborted, match=r"field 'responses': expected a rationale to review"):
        _imp(engine, argilla_folder(tmp_path / "nodraft", no_draft), "argilla", **ARGILLA_FLAGS)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ImportAborted, match="not an Argilla dataset folder"):
        _imp(engine, tmp_path / "plain", "argilla")
    assert _counts(engine) == before


def test_argilla_skip_invalid_keeps_the_good_records(engine, project, tmp_path):
    bad = [dict(ARGILLA_RECORDS[0], responses={"accuracy": [{"value": 0, "user_id": U1}]}), ARGILLA_RECORDS[1]]
    s = _imp(engine, argilla_folder(tmp_path / "ds", bad), "argilla", skip_invalid=True,
             rejects_path=tmp_path / "rej.jsonl", **ARGILLA_FLAGS)
    assert (s.added, s.rejected) == (1, 1)
    assert json.loads((tmp_path / "rej.jsonl").read_text())["field"] == "responses.accuracy[0]"


LS_TASKS = [
    {"id": 101, "data": {"question": "Antidote for warfarin-associated major bleeding?",
                         "options": "A Vitamin K and prothrombin complex concentrate\nB Protamine\nC Idarucizumab",
                         "answer": "A"},
     "meta": {}, "created_at": "2024-05-02T09:00:00Z", "project": 3,
     "annotations": [
         {"id": 1, "completed_by": 7, "lead_time": 42.5, "was_cancelled": False, "ground_truth": False,
          "created_at": "2024-05-02T10:00:00Z",
          "result": [{"id": "r1", "from_name": "correctness", "to_name": "rationale", "type": "rating",
                      "value": {"rating": 4}},
                     {"id": "r2", "from_name": "reasoning", "to_name": "rationale", "type": "rating",
                      "value": {"rating": 3}},
                     {"id": "r3", "from_name": "reasoning_comment", "to_name": "rationale", "type": "textarea",
                      "value": {"text": ["Skips why protamine is wrong."]}},
                     {"id": "r4", "from_name": "verdict", "to_name": "rationale", "type": "choices",
                      "value": {"choices": ["regenerate"]}}]},
         {"id": 2, "completed_by": {"id": 9, "email": "dr.lee@example.org"}, "lead_time": 10.0,
          "was_cancelled": True, "result": []}],
     "predictions": [{"model_version": "deepseek-r1", "score": 0.5,
                      "result": [{"from_name": "rationale", "to_name": "question", "type": "textarea",
                                  "value": {"text": ["Step 1: warfarin needs vitamin K and PCC.\nFinal answer: A"]}}]}]},
    {"id": 102, "data": {"question": "Antidote for heparin overdose?", "options": "A Protamine\nB Vitamin K",
                         "answer": "A"}, "annotations": [], "predictions": []},
]


def test_label_studio_export_brings_drafts_and_reviews(engine, project, tmp_path):
    path = tmp_path / "project-3-at-2024.json"
    path.write_text(json.dumps(LS_TASKS, indent=2))
    s = _imp(engine, path, "auto")
    assert s.files == ["project-3-at-2024.json (labelstudio)"]
    assert (s.added, s.annotations.versions, s.annotations.reviews, s.annotations.reviewers_created) == (2, 1, 1, 1)
    with engine.connect() as conn:
        warfarin = conn.execute(select(items).where(items.c.question.like("Antidote for warfarin%"))).mappings().one()
        version = store_rationales.latest_version(conn, item_id=warfarin["id"])
        review = conn.execute(select(reviews, users.c.username, users.c.active)
                              .join(users, users.c.id == reviews.c.reviewer_id)).mappings().one()
    assert dict(warfarin["options"])["A"] == "Vitamin K and prothrombin complex concentrate"
    assert warfarin["answer_labels"] == ["A"] and warfarin["state"] == "screening"
    assert version.model == "deepseek-r1" and version.text.startswith("Step 1: warfarin needs vitamin K")
    assert review["username"] == "7@labelstudio" and review["active"] is False
    assert review["scores"] == {"correctness": 4, "reasoning": 3} and review["verdict"] == "regenerate"
    assert review["comments"] == {"reasoning": "Skips why protamine is wrong."} and review["seconds_spent"] == 42.5


def test_label_studio_refusals(engine, project, tmp_path):
    task = json.loads(json.dumps(LS_TASKS[0]))
    task["annotations"][0]["result"][0]["from_name"] = "quality"
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([task]))
    with pytest.raises(ImportAborted, match=r"ls.json: record 1 \(task 101\): field 'annotations\[0\].result\[0\]': the rating question "
                                            r"'quality' is not a rubric dimension"):
        _imp(engine, path, "labelstudio")
    s = _imp(engine, path, "labelstudio", question_map={"quality": "correctness"})
    assert s.annotations.reviews == 1
    task["annotations"][0]["result"][3]["value"] = {"choices": ["maybe"]}
    path.write_text(json.dumps([task]))
    with pytest.raises(ImportAborted, match=r"record 1 \(task 101\): field 'annotations\[0\].result\[3\]': expected a "
                                            r"verdict"):
        _imp(engine, tmp_path / "ls.json", "labelstudio", question_map={"quality": "correctness"})
    path.write_text(json.dumps({"tasks": []}))
    with pytest.raises(ImportAborted, match="a list of tasks"):
        _imp(engine, path, "labelstudio")


def test_dry_run_of_an_annotation_tool_counts_and_writes_nothing(engine, project, tmp_path):
    folder = argilla_folder(tmp_path / "ds", ARGILLA_RECORDS)
    before = _counts(engine)
    s = _imp(engine, folder, "argilla", dry_run=True, **ARGILLA_FLAGS)
    assert _counts(engine) == before
    assert (s.added, s.annotations.versions, s.annotations.reviews, s.annotations.reviewers_created) == (2, 1, 2, 2)
    assert s.preview[0]["state"] == "screening" and s.preview[0]["versions"] == 1 and s.preview[0]["reviews"] == 2


def test_label_studio_is_recognised_whatever_the_size_of_its_first_task(engine, project, tmp_path):
    task = json.loads(json.dumps(LS_TASKS[0]))
    task["data"]["question"] = "Antidote for warfarin-associated major bleeding? " + "Long vignette. " * 800
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task, LS_TASKS[1]], indent=2))
    s = _imp(engine, path, "auto")
    assert s.files == ["export.json (labelstudio)"] and s.annotations.reviews == 1


def test_label_studio_skip_invalid_keeps_the_good_tasks(engine, project, tmp_path):
    bad = json.loads(json.dumps(LS_TASKS[0]))
    bad["annotations"][0]["result"][0]["value"] = {"rating": 7}
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([bad, LS_TASKS[1], "not a task"]))
    s = _imp(engine, path, "labelstudio", skip_invalid=True, rejects_path=tmp_path / "rej.jsonl")
    assert (s.added, s.rejected) == (1, 2)
    rejected = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [(r["record"], r["field"]) for r in rejected] == [(1, "annotations[0].result[0]"), (3, "(task)")]


def test_a_record_that_is_not_an_object_with_its_fields_is_refused_by_number(engine, project, tmp_path):
    before = _counts(engine)
    folder = argilla_folder(tmp_path / "ds", [ARGILLA_RECORDS[0], {"id": "rec-x", "fields": "prompt"}])
    with pytest.raises(ImportAborted, match=r"ds: record 2 \(id rec-x\): field '\(record\)': expected an Argilla "
                                            r"record: an object with fields"):
        _imp(engine, folder, "argilla", **ARGILLA_FLAGS)
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([LS_TASKS[0], ["data"]]))
    with pytest.raises(ImportAborted, match=r"ls.json: record 2: field '\(task\)': expected a Label Studio task: an "
                                            r"object with data"):
        _imp(engine, path, "labelstudio", question_map={"quality": "correctness"})
    task = json.loads(json.dumps(LS_TASKS[0]))
    task["data"].pop("rationale", None)
    task["predictions"] = []
    path.write_text(json.dumps([task]))
    with pytest.raises(ImportAborted, match=r"record 1 \(task 101\): field 'annotations': expected a rationale to "
                                            r"review: annotations need data.rationale or a prediction for 'rationale'"):
        _imp(engine, path, "labelstudio")
    assert _counts(engine) == before
