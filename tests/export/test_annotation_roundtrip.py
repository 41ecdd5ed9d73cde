"""`clinreason export --format argilla|labelstudio` and back: the layouts the tools read (Argilla's
`Dataset.to_disk` folder; Label Studio tasks + a label config generated from the rubric), reviewers under
anonymised ids only, and a round trip — export, then import into another project — that gives the same
items, the same rationale texts and lineage, and the same reviews (scores, comments, verdicts, seconds,
step marks) by the same (anonymised) reviewers. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import select, update

from clinreason.analytics.scan import project_salt, pseudonym
from clinreason.config import ProjectConfig
from clinreason.domain.records import Review
from clinreason.stages.export import ExportError, ExportOptions, run_export
from clinreason.stages.ingest import import_path
from clinreason.store import accounts, db
from clinreason.store import decisions as store_decisions
from clinreason.store import items as store_items
from clinreason.store import projects as store_projects
from clinreason.store import rationales as store_rationales
from clinreason.store import reviews as store_reviews
from clinreason.store.common import new_id
from clinreason.store.tables import items, rationales, reviews, users

DIMS = ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value"]
BANK = [
    {"question": "A 64-year-old with crushing chest pain and ST elevation. First drug?",
     "options": {"A": "Aspirin", "B": "Alteplase", "C": "Atenolol", "D": "Amiodarone"}, "answer": "A",
     "specialty": "cardiology"},
    {"question": "Which two drugs are anticoagulants?", "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"},
     "answer": ["B", "C"], "context": "Pharmacology block, year 2."},
    {"question": "患者，男，60岁，突发胸痛2小时。首选哪种药物？", "options": {"A": "阿司匹林", "B": "肝素"}, "answer": "A"},
    {"question": "Drug of choice for absence seizures?", "options": {"A": "Ethosuximide", "B": "Phenytoin"},
     "answer": "A"},
]


def _build(engine) -> dict:
    """Four accepted items (consensus after an expert's edit, a regeneration, an adjudicated text) and one
    still in review, written through the store's own functions."""
    bank = Path(engine.url.database or "x").parent if engine.dialect.name == "sqlite" else None
    path = (bank or Path("/tmp")) / f"bank-{uuid.uuid4().hex[:8]}.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in BANK) + "\n"
                    + json.dumps({"question": "Still in review?", "options": ["x", "y"], "answer": "A"}) + "\n",
                    encoding="utf-8")
    import_path(engine, project="default", path=path, fmt="jsonl")
    path.unlink()
    with db.transaction(engine) as conn:
        proj = store_projects.require_project(conn, name="default")
        ids = {name: accounts.add_user(conn, username=name, role=role, specialties=[], password_hash="x")
               for name, role in (("alice", "reviewer"), ("bob", "reviewer"), ("carol", "reviewer"),
                                  ("erin", "adjudicator"))}
        rows = {r.question: r for r in store_items.project_items(conn, project_id=proj["id"])}

        def version(item, origin, author, text, **kw):
            return store_rationales.add_version(conn, store_rationales.NewVersion(
                item=item, origin=origin, author=author, text=text, **kw))

        def review(v, who, verdict, scores, comments=None, **kw):
            store_reviews.add_review(conn, Review(id=new_id(), rationale_id=v.id, item_id=v.item_id,
                                                  reviewer_id=ids[who], verdict=verdict, scores=scores,
                                                  comments=comments or {}, rubric_version=1, **kw))

        all5 = dict.fromkeys(DIMS, 5)
        for n, rec in enumerate(BANK):
            item = rows[rec["question"]]
            v1 = version(item, "generated", "model:deepseek-r1",
                         f"Step 1: read the stem ({n}).\nStep 2: weigh the options.\nFinal answer: {item.answer_labels[0]}",
                         parsed={"steps": [f"read the stem ({n})", "weigh the options"],
                                 "final_answer": list(item.answer_labels), "parse_status": "ok"},
                         model="deepseek-r1", params={"temperature": 0.6}, prompt_hash="ph-draft", seed=n)
            review(v1, "alice", "edit", {**all5, "reasoning": 3}, {"reasoning": "Step 2 skips why B is wrong.",
                                                                   "general": "Good start."},
                   seconds_spent=95.5, edited_text="My better text",
                   steps=[{"step": 2, "verdict": "error", "category": "logical_leap", "severity": "major",
                           "note": "skips B", "correction": "rule out B first"}, {"step": 1, "verdict": "ok"}])
            review(v1, "bob", "regenerate", {"correctness": 4, "reasoning": 2}, {"sufficiency": "Misses the ECG."},
                   seconds_spent=40.0)
            if n == 3:
                v2 = version(item, "regenerated", "model:deepseek-r1", "Step 1: absence seizures respond to "
                             "ethosuximide.\nFinal answer: A", model="deepseek-r1", prompt_hash="ph-regen")
                v3 = version(item, "adjudicated", "user:erin", "Ethosuximide is first line.\nFinal answer: A")
                review(v2, "carol", "regenerate", {**all5, "correctness": 3})
                store_decisions.add_decision(conn, item_id=item.id, kind="adjudication", rationale_id=v3.id,
                                             decided_by="user:erin", reason="wrote the final text")
            else:
                v2 = version(item, "edited", "user:alice", f"Step 1: read the stem carefully ({n}).\n"
                             f"Step 2: rule out the others.\nFinal answer: {', '.join(item.answer_labels)}")
                review(v2, "bob", "accept", all5, seconds_spent=30.0)
                review(v2, "carol", "accept", all5, {"general": "中文评论：很好。"})
                store_decisions.add_decision(conn, item_id=item.id, kind="consensus", rationale_id=v2.id,
                                             decided_by="consensus", reason="all reviewers accepted")
            conn.execute(update(items).where(items.c.id == item.id).values(state="accepted"))
        salt = project_salt(conn, proj["id"])
    return {"salt": salt}


def _story(engine, project: str, rename=lambda name: name) -> dict:
    """Everything the round trip must keep, by content hash: the item, its versions, their reviews."""
    with engine.connect() as conn:
        proj = store_projects.require_project(conn, name=project)
        found = {}
        for it in conn.execute(select(items).where(items.c.project_id == proj["id"])).mappings():
            versions = []
            for v in conn.execute(select(rationales).where(rationales.c.item_id == it["id"])
                                  .order_by(rationales.c.version)).mappings():
                revs = conn.execute(select(reviews, users.c.username).join(users, users.c.id == reviews.c.reviewer_id)
                                    .where(reviews.c.rationale_id == v["id"])).mappings().all()
                author = v["author"]
                if author.startswith("user:"):
                    author = "user:" + rename(author[5:])
                versions.append({
                    "version": v["version"], "parent": v["parent_version"], "origin": v["origin"], "author": author,
                    "text": v["text"], "steps": v["steps"], "final_answer": v["final_answer"], "model": v["model"],
                    "prompt_hash": v["prompt_hash"], "params": v["params"], "seed": v["seed"],
                    "reviews": sorted((rename(r["username"]), r["verdict"], json.dumps(r["scores"], sort_keys=True),
                                       json.dumps(r["comments"], sort_keys=True, ensure_ascii=False),
                                       r["seconds_spent"],
                                       json.dumps(sorted(r["steps"] or [], key=lambda m: m["step"]), sort_keys=True),
                                       r["edited_text"]) for r in revs)})
            found[it["content_hash"]] = {
                "question": it["question"], "options": it["options"], "answer": it["answer_labels"],
                "answer_text": it["answer_text"], "language": it["language"], "specialty": it["specialty"],
                "context": it["context"], "state": it["state"], "versions": versions}
    return found


@pytest.fixture
def copy_project(engine, project):
    pc = ProjectConfig()
    with engine.begin() as conn:
        row, _ = store_projects.ensure_project(conn, name="copy", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                               rubric=pc.rubric)
    return row


@pytest.mark.parametrize("fmt", ["argilla", "labelstudio"])
def test_export_then_import_gives_the_same_items_rationales_and_reviews(engine, project, copy_project, tmp_path, fmt):
    built = _build(engine)
    out = tmp_path / fmt
    summary = run_export(engine, project="default", out=out, opts=ExportOptions(fmt=fmt))
    assert summary.total == 4 and sum(summary.records.values()) == 9  # one record per version: 2 + 2 + 2 + 3
    imported = import_path(engine, project="copy", path=out, fmt="auto")
    assert imported.files == [f"{out.name} ({fmt})" if fmt == "argilla" else "tasks.json (labelstudio)"]
    assert imported.added == 4 and imported.rejected == 0
    assert imported.annotations.versions == 9 and imported.annotations.reviews == 15
    assert imported.annotations.reviewers_created == 4  # alice, bob, carol reviewed; erin wrote a version

    def as_exported(name: str) -> str:
        return f"{pseudonym(built['salt'], name)}@{fmt}"

    source = {h: s for h, s in _story(engine, "default", rename=as_exported).items() if s["state"] == "accepted"}
    copied = _story(engine, "copy")
    assert set(copied) == set(source)
    for content_hash, item in source.items():
        back = copied[content_hash]
        for key in ("question", "options", "answer", "answer_text", "language", "specialty", "context"):
            assert back[key] == item[key], key
        assert back["versions"] == item["versions"]
        assert back["state"] == "screening"  # the source's decision is not re-made: screening, then review
    with engine.connect() as conn:
        made = conn.execute(select(users.c.username, users.c.active, users.c.role)
                            .where(users.c.username.like(f"%@{fmt}"))).all()
    assert sorted(u for u, _, _ in made) == sorted(as_exported(n) for n in ("alice", "bob", "carol", "erin"))
    assert all(active is False and role == "reviewer" for _, active, role in made)
    # a second import of the same export adds nothing
    again = import_path(engine, project="copy", path=out, fmt=fmt)
    assert (again.added, again.annotations.versions, again.annotations.reviews) == (0, 0, 0)
    assert _story(engine, "copy") == copied


def test_argilla_folder_is_what_dataset_to_disk_writes(engine, project, tmp_path):
    _build(engine)
    out = tmp_path / "argilla"
    run_export(engine, project="default", out=out, opts=ExportOptions(fmt="argilla"))
    assert sorted(p.name for p in out.iterdir()) == [".argilla", ".clinreason-export.json", "README.md",
                                                      "records.json"]
    settings = json.loads((out / ".argilla" / "settings.json").read_text())
    dataset = json.loads((out / ".argilla" / "dataset.json").read_text())
    assert dataset["name"] == "default" and dataset["allow_extra_metadata"] is True
    kinds = {q["name"]: q["settings"] for q in settings["questions"]}
    for dim in DIMS:
        assert kinds[dim] == {"type": "rating", "options": [{"value": v} for v in range(1, 6)]}
        assert kinds[f"{dim}_comment"]["type"] == "text"
    assert [o["value"] for o in kinds["verdict"]["options"]] == ["accept", "edit", "regenerate", "flag_question"]
    fields = {f["name"]: f["settings"] for f in settings["fields"]}
    assert fields["rationale"] == {"type": "text", "use_markdown": True}
    records = json.loads((out / "records.json").read_text())
    first = records[0]
    assert set(first) == {"id", "fields", "metadata", "suggestions", "responses", "vectors", "_server_id"}
    users_seen = {a["user_id"] for answers in first["responses"].values() for a in answers}
    assert users_seen and all(uuid.UUID(u) for u in users_seen)
    prov = json.loads(first["metadata"]["clinreason"])
    assert prov["version"]["number"] == 1 and prov["item"]["question"] == first["fields"]["question"]
    assert set(prov["reviewers"]) == users_seen and all(re.fullmatch(r"R-[0-9a-f]{8}", n)
                                                        for n in prov["reviewers"].values())
    text = (out / "records.json").read_text(encoding="utf-8")
    for name in ("alice", "bob", "carol", "erin"):  # reviewers appear only under anonymised ids
        assert not re.search(rf"\b{name}\b", text), name
    again = tmp_path / "again"
    run_export(engine, project="default", out=again, opts=ExportOptions(fmt="argilla"))
    for name in ("records.json", ".argilla/settings.json", ".argilla/dataset.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_label_studio_tasks_and_a_label_config_from_the_rubric(engine, project, tmp_path):
    _build(engine)
    out = tmp_path / "ls"
    run_export(engine, project="default", out=out, opts=ExportOptions(fmt="labelstudio"))
    assert sorted(p.name for p in out.iterdir()) == [".clinreason-export.json", "README.md", "label_config.xml",
                                                      "tasks.json"]
    view = ET.fromstring((out / "label_config.xml").read_text(encoding="utf-8"))
    ratings = {e.get("name"): e for e in view.iter("Rating")}
    assert list(ratings) == DIMS and all(e.get("maxRating") == "5" and e.get("toName") == "rationale"
                                         for e in ratings.values())
    assert [e.get("name") for e in view.iter("TextArea")] == [f"{d}_comment" for d in DIMS] + ["comment"]
    assert [c.get("value") for c in view.iter("Choice")] == ["accept", "edit", "regenerate", "flag_question"]
    names = {e.get("name") for e in view if e.get("name")}
    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    for task in tasks:
        for annotation in task["annotations"]:
            assert isinstance(annotation["completed_by"], int) and annotation["lead_time"] is None \
                or isinstance(annotation["lead_time"], float)
            assert {r["from_name"] for r in annotation["result"]} <= names  # every result names a control
            assert {r["type"] for r in annotation["result"]} <= {"rating", "textarea", "choices"}
        assert set(task["data"]) >= {"question", "options", "answer", "rationale"}
    text = (out / "tasks.json").read_text(encoding="utf-8")
    for name in ("alice", "bob", "carol", "erin"):
        assert not re.search(rf"\b{name}\b", text), name


def test_annotation_exports_refuse_splits(engine, project, tmp_path):
    with pytest.raises(ExportError, match="--splits: not for argilla"):
        run_export(engine, project="default", out=tmp_path / "x", opts=ExportOptions(fmt="argilla", splits=(0.5, 0.5)))
