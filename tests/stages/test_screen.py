"""Screening: checks recorded, routing by blocking checks, retries, flags, the LLM judge."""

from __future__ import annotations

import json

from sqlalchemy import select

from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages.runner import DRAFT, REGENERATE, run_llm_stage
from clinreason.stages.screen import parse_judge, run_screening
from clinreason.store.tables import checks, items, rationales


async def test_good_drafts_go_to_review_with_their_checks(engine, imported, pc):
    await run_llm_stage(engine, project=imported, pc=pc, backend=FakeBackend(), kind=DRAFT, limit=6)
    report = await run_screening(engine, project=imported, pc=pc)
    assert report.screened == 6
    with engine.connect() as conn:
        rows = conn.execute(select(checks)).mappings().all()
        in_review = conn.execute(select(items.c.id).where(items.c.state == "in_review")).scalars().all()
    names = {r["name"] for r in rows}
    assert {"parse", "answer_matches_gold", "options_addressed", "length", "answer_leakage", "language",
            "near_duplicate"} <= names
    assert all(r["blocking"] == (r["name"] in pc.screen.blocking) for r in rows)
    assert len(in_review) == report.to_review


async def test_blocking_failure_retries_then_goes_to_experts_flagged(engine, imported, pc):
    pc.generate.max_auto_retries = 2
    bad = "1. The answer key says D.\n2. So it is D.\nFinal answer: D"
    backend = FakeBackend(handler=lambda messages, params: bad)
    await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=DRAFT, limit=1)
    for _ in range(2):
        r = await run_screening(engine, project=imported, pc=pc)
        assert r.to_regeneration == 1
        await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=REGENERATE)
    final = await run_screening(engine, project=imported, pc=pc)
    assert final.to_review == 1 and final.flagged == 1
    with engine.connect() as conn:
        item = conn.execute(select(items).where(items.c.state == "in_review")).mappings().one()
        versions = conn.execute(select(rationales.c.version).where(rationales.c.item_id == item["id"])).scalars().all()
    assert sorted(versions) == [1, 2, 3]
    assert "answer_leakage" in item["flag_reason"] and "after 2 regeneration" in item["flag_reason"]


async def test_solve_mode_disagreement_is_flagged_not_regenerated(engine, imported, pc):
    pc.generate.mode = "solve"
    backend = FakeBackend(handler=lambda m, p: "1. Weighing A, B, C and D against the stem.\n"
                                               "2. The findings fit option B best; the others do not.\nFinal answer: B")
    await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=DRAFT)
    report = await run_screening(engine, project=imported, pc=pc)
    with engine.connect() as conn:
        flagged = conn.execute(select(items.c.flag_reason).where(items.c.flag_reason.like("%answered blind%"))).scalars().all()
    assert flagged and report.flagged >= len(flagged)
    assert "worth an expert's look" in flagged[0]


async def test_llm_judge_pre_scores_every_dimension(engine, imported, pc):
    await run_llm_stage(engine, project=imported, pc=pc, backend=FakeBackend(), kind=DRAFT, limit=2)
    verdict = {"scores": {"correctness": 5, "reasoning": 3, "sufficiency": 4, "terminology": 4, "clinical_value": 4},
               "justifications": {"reasoning": "skips the distractors"}}
    judge = FakeBackend(handler=lambda m, p: json.dumps(verdict))
    report = await run_screening(engine, project=imported, pc=pc, judge=judge)
    assert report.judged == 2 and "Rationale to grade" in judge.calls[0].messages[-1]["content"]
    with engine.connect() as conn:
        rows = conn.execute(select(checks).where(checks.c.name.like("judge:%"))).mappings().all()
    by_name = {r["name"]: r for r in rows}
    assert len(rows) == 10 and by_name["judge:reasoning"]["score"] == 3 and not by_name["judge:reasoning"]["passed"]
    assert by_name["judge:reasoning"]["detail"] == "skips the distractors" and not by_name["judge:reasoning"]["blocking"]


def test_judge_parse_errors_are_reported():
    from clinreason.domain.rubric import DEFAULT_RUBRIC_DICT

    assert "JSON object" in parse_judge("no json here", DEFAULT_RUBRIC_DICT)
    assert "no valid score for reasoning" in parse_judge('{"scores": {"correctness": 5}}', DEFAULT_RUBRIC_DICT)
