"""A small factory of review data, written straight into the tables: reviewers, items with sources and
licences, rationale versions (drafted, regenerated, edited), blind reviews with scores and verdicts,
decisions. Deterministic for a seed; returns what it wrote so tests can recompute statistics with the
reference libraries."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from clinreason.store.tables import decisions, item_sources, items, rationales, reviews, users

DIMS = ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value"]
REVIEWERS = [("alice", "reviewer", ["cardiology"]), ("bob", "reviewer", ["neurology"]),
             ("carol", "reviewer", ["cardiology", "pediatrics"]), ("dave", "reviewer", ["pediatrics"]),
             ("erin", "adjudicator", ["cardiology"])]
SPECIALTIES = ["cardiology", "neurology", "pediatrics"]
SOURCES = [("medqa", "MIT"), ("cmexam", "research use only")]
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@dataclass
class Built:
    reviewer_ids: dict[str, int] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)  # rationale_id, reviewer, verdict, scores, item_id
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # item -> rationale rows
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)


def add_reviewers(conn, built: Built, names=REVIEWERS) -> None:
    for username, role, specialties in names:
        uid = conn.execute(insert(users).values(username=username, role=role, specialties=specialties,
                                                password_hash="x", active=True, created_at=T0)).inserted_primary_key[0]
        built.reviewer_ids[username] = int(uid)


def _score(rng: random.Random, quality: float) -> int:
    return max(1, min(5, round(quality + rng.gauss(0, 0.7))))


def build(engine: Engine, project_id: int, *, n_items: int = 40, seed: int = 7, prefix: str = "it",
          reviewers=REVIEWERS, missing_rate: float = 0.05, step_judge_rate: float | None = None,
          step_error_rate: float = 0.3) -> Built:
    """With `step_judge_rate`, reviews carry step marks (`reviews.steps`, as the review stage stores them):
    each reviewer judges each step with that probability; a step is bad with probability `step_error_rate`,
    and a reviewer marks it `error` mostly when it is bad (agreement above chance, not perfect). The marks
    come from a random stream of their own: the rest of the data is the same with or without them."""
    rng = random.Random(seed)
    marks_rng = random.Random(seed * 7919 + 1)
    built = Built()
    item_rows, source_rows, rat_rows, review_rows, decision_rows = [], [], [], [], []
    with engine.begin() as conn:
        add_reviewers(conn, built, reviewers)
        pool = [name for name, role, _ in reviewers if role == "reviewer"]
        adjudicator = next(name for name, role, _ in reviewers if role == "adjudicator")
        for n in range(n_items):
            item_id = f"{prefix}{n:05d}"
            ts = T0 + timedelta(hours=n)
            outcome = rng.choices(["consensus", "adjudication", "excluded", "open"], [60, 12, 6, 22])[0]
            rounds = rng.choice([1, 1, 2, 3])
            zh = n % 5 == 0
            source, licence = SOURCES[1] if zh else SOURCES[0]
            state = {"consensus": "accepted", "adjudication": "accepted", "excluded": "excluded",
                     "open": "in_review"}[outcome]
            item_rows.append(dict(
                id=item_id, project_id=project_id, content_hash=hashlib.sha256(item_id.encode()).hexdigest(),
                question=("患者，男，60岁，胸痛2小时。首选哪种药物？" if zh else f"Q{n}: a 60-year-old with chest pain. First drug?"),
                options=[["A", "Aspirin"], ["B", "Heparin"], ["C", "Morphine"], ["D", "Nitroglycerin"]],
                answer_labels=["A"], answer_text=None, language="zh" if zh else "en",
                specialty=SPECIALTIES[n % len(SPECIALTIES)], context=None, reference_explanation=None, meta={},
                state=state, strikes=rounds - 1, auto_retries=0, created_at=ts, updated_at=ts))
            source_rows.append(dict(item_id=item_id, source=source, subject=None, file=f"{source}.jsonl",
                                    record=str(n), license=licence, imported_at=ts))
            built.item_ids.append(item_id)
            versions = []
            for v in range(1, rounds + 1):
                origin = "generated" if v == 1 else rng.choice(["regenerated", "edited"])
                rid = f"{item_id}-v{v}"
                text = f"Step 1: chest pain suggests ACS (v{v}).\nStep 2: aspirin first.\nFinal answer: A"
                row = dict(id=rid, item_id=item_id, version=v, parent_version=v - 1 if v > 1 else None, origin=origin,
                           author=("user:" + rng.choice(pool)) if origin == "edited" else "model:deepseek-r1",
                           steps=text.splitlines()[:2], final_answer=["A"], text=text,
                           model=None if origin == "edited" else "deepseek-r1", params={"temperature": 0.2},
                           prompt_hash=None if origin == "edited" else ("ph-draft" if v == 1 else "ph-regen"),
                           seed=0, raw_output=None, reasoning=None,
                           prompt_tokens=0 if origin == "edited" else 100 + n,
                           completion_tokens=0 if origin == "edited" else 300 + v,
                           cost=0.0 if origin == "edited" else 0.001, latency_ms=None, parse_status="ok",
                           parse_error=None, idempotency_key=None, fingerprint=None,
                           created_at=ts + timedelta(minutes=10 * v))
                rat_rows.append(row)
                versions.append(row)
                bad = [marks_rng.random() < step_error_rate for _ in row["steps"]]
                last = v == rounds
                k = 3 if rng.random() < 0.15 else 2
                quality = 3.0 + 0.6 * v + rng.uniform(-0.5, 0.5)
                for j, who in enumerate(rng.sample(pool, k)):
                    scores = {d: _score(rng, quality) for d in DIMS}
                    if rng.random() < missing_rate:
                        scores.pop(rng.choice(DIMS))
                    if last and outcome == "consensus":
                        verdict = "accept"
                    elif outcome == "excluded" and last:
                        verdict = rng.choice(["flag_question", "regenerate"])
                    else:
                        verdict = rng.choice(["accept", "edit", "regenerate"] if last else ["edit", "regenerate"])
                    rec = dict(id=f"{rid}-r{j}", rationale_id=rid, item_id=item_id, assignment_id=None,
                               reviewer_id=built.reviewer_ids[who], verdict=verdict, scores=scores,
                               comments={"reasoning": "ok"}, edited_text=None,
                               seconds_spent=round(rng.uniform(30, 400), 1), rubric_version=1,
                               created_at=ts + timedelta(minutes=10 * v + j + 1))
                    if step_judge_rate is not None:
                        rec["steps"] = _marks(marks_rng, bad, step_judge_rate) or None
                    review_rows.append(rec)
                    built.reviews.append({**rec, "reviewer": who})
            built.versions[item_id] = versions
            if outcome in ("consensus", "adjudication"):
                chosen = versions[-1] if outcome == "consensus" else rng.choice(versions)
                dec = dict(item_id=item_id, kind=outcome, rationale_id=chosen["id"],
                           decided_by="consensus" if outcome == "consensus" else f"user:{adjudicator}", reason="",
                           created_at=ts + timedelta(days=1))
                built.accepted.append(item_id)
            elif outcome == "excluded":
                dec = dict(item_id=item_id, kind="excluded", rationale_id=None, decided_by=f"user:{adjudicator}",
                           reason="flawed question", created_at=ts + timedelta(days=1))
            else:
                continue
            decision_rows.append(dec)
            built.decisions[item_id] = dec
        conn.execute(insert(items), item_rows)
        conn.execute(insert(item_sources), source_rows)
        conn.execute(insert(rationales), rat_rows)
        if review_rows:
            conn.execute(insert(reviews), review_rows)
        if decision_rows:
            conn.execute(insert(decisions), decision_rows)
    return built


def _marks(rng: random.Random, bad: list[bool], judge_rate: float) -> list[dict[str, Any]]:
    marks: list[dict[str, Any]] = []
    for s, is_bad in enumerate(bad, 1):
        if rng.random() >= judge_rate:
            continue
        if rng.random() < (0.8 if is_bad else 0.1):
            marks.append({"step": s, "verdict": "error", "category": "factual_error", "severity": "major",
                          "note": f"step {s} is wrong"})
        else:
            marks.append({"step": s, "verdict": "ok"})
    return marks


def matrix(built: Built, dim: str) -> tuple[list[str], list[list[float]]]:
    """raters × units matrix (NaN = not rated) of one dimension, units ordered by rationale id."""
    units = sorted({r["rationale_id"] for r in built.reviews})
    raters = sorted({r["reviewer"] for r in built.reviews})
    grid = [[float("nan")] * len(units) for _ in raters]
    for r in built.reviews:
        if dim in r["scores"]:
            grid[raters.index(r["reviewer"])][units.index(r["rationale_id"])] = float(r["scores"][dim])
    return raters, grid


def step_matrix(built: Built) -> list[list[float]]:
    """raters × units matrix of step judgments (0 = ok, 1 = error, NaN = not judged); unit = (version, step)."""
    units = sorted({(r["rationale_id"], m["step"]) for r in built.reviews for m in r.get("steps") or []})
    raters = sorted({r["reviewer"] for r in built.reviews})
    grid = [[float("nan")] * len(units) for _ in raters]
    index = {u: i for i, u in enumerate(units)}
    for r in built.reviews:
        for m in r.get("steps") or []:
            grid[raters.index(r["reviewer"])][index[(r["rationale_id"], m["step"])]] = \
                1.0 if m["verdict"] == "error" else 0.0
    return grid
