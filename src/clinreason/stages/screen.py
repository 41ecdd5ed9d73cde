"""The screen stage: automatic checks on every new rationale version, an optional LLM judge, routing.

A draft that fails a blocking check goes back for automatic regeneration with the failure as
feedback, up to `max_auto_retries`; after that it goes to the experts flagged. Passing drafts go to
the review queue with their check results as hints.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from clinreason.config import ProjectConfig
from clinreason.domain.checks import CheckResult, FingerprintIndex, ScreenBounds, run_checks
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.rubric import rubric_from_dict
from clinreason.llm.base import LLMBackend, LLMError, LLMParams
from clinreason.prompts import render
from clinreason.stages.consensus import enter_review
from clinreason.stages.generate import prompt_view
from clinreason.store import repository as repo
from clinreason.store import work
from clinreason.store.tables import checks, items, rationales


@dataclass
class ScreenReport:
    screened: int = 0
    to_review: int = 0
    to_regeneration: int = 0
    flagged: int = 0
    judged: int = 0
    judge_errors: int = 0
    failed_checks: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- the LLM judge: two pure functions ------------------------------------------------------------

def build_judge_messages(item: dict[str, Any], rationale_text: str, rubric_body: dict[str, Any]):
    rubric = rubric_from_dict(rubric_body)
    dims = [{"name": d.name, "description": d.description} for d in rubric.dimensions]
    return render("judge", item["language"], item=prompt_view(item), rationale=rationale_text, dimensions=dims,
                  scale_min=rubric.scale_min, scale_max=rubric.scale_max)


def parse_judge(raw: str, rubric_body: dict[str, Any]) -> list[CheckResult] | str:
    """Judge pre-scores as non-blocking checks `judge:<dimension>`; a string is the parse error."""
    rubric = rubric_from_dict(rubric_body)
    match = re.search(r"\{.*\}", raw or "", re.S)
    if not match:
        return "the judge did not answer with a JSON object"
    try:
        obj = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        return f"the judge's JSON is invalid: {exc.msg}"
    scores, notes = obj.get("scores") or {}, obj.get("justifications") or {}
    out = []
    for dim in rubric.dimensions:
        value = scores.get(dim.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not rubric.scale_min <= value <= rubric.scale_max:
            return f"the judge gave no valid score for {dim.name}"
        out.append(CheckResult(f"judge:{dim.name}", value >= dim.threshold, str(notes.get(dim.name, ""))[:500],
                               float(value)))
    return out


# --- the stage ------------------------------------------------------------------------------------

def _load_batch(engine: Engine, project_id: int, worker: str, limit: int, lease: int) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        rows = work.claim(conn, project_id=project_id, state=ItemState.SCREENING, worker=worker, limit=limit,
                          lease_seconds=lease)
        for row in rows:
            latest = conn.execute(select(rationales).where(rationales.c.item_id == row["id"])
                                  .order_by(rationales.c.version.desc()).limit(1)).mappings().first()
            row["rationale"] = dict(latest) if latest else None
    return rows


def _fingerprint_index(conn: Connection, project_id: int) -> FingerprintIndex:
    """Latest fingerprint per item (one query; a project of 31k items is a few MB)."""
    found: dict[str, tuple[int, int]] = {}
    for item_id, version, fp in conn.execute(
        select(rationales.c.item_id, rationales.c.version, rationales.c.fingerprint)
        .join(items, items.c.id == rationales.c.item_id)
        .where(items.c.project_id == project_id, rationales.c.fingerprint.is_not(None))
    ):
        if item_id not in found or version > found[item_id][0]:
            found[item_id] = (version, fp)
    index = FingerprintIndex()
    for item_id, (_, fp) in found.items():
        index.add(item_id, fp)
    return index


def _route(conn: Connection, *, row: dict[str, Any], results: list[CheckResult], pc: ProjectConfig, worker: str,
           report: ScreenReport) -> None:
    rationale = row["rationale"]
    ts = repo.now()
    blocking = set(pc.screen.blocking)
    if pc.generate.mode == "solve":
        blocking.discard("answer_matches_gold")  # a blind disagreement is for experts to see, not to hide
    conn.execute(insert(checks), [
        {"rationale_id": rationale["id"], "name": r.name, "passed": r.passed, "blocking": r.name in blocking,
         "score": r.score, "detail": r.detail, "created_at": ts} for r in results])
    failing = [r for r in results if not r.passed and r.name in blocking]
    for r in results:
        if not r.passed:
            report.failed_checks[r.name] = report.failed_checks.get(r.name, 0) + 1
    actor = f"worker:{worker}"
    summary = {"rationale_id": rationale["id"], "version": rationale["version"],
               "failed": [r.name for r in results if not r.passed]}
    if failing and row["auto_retries"] < pc.generate.max_auto_retries:
        repo.transition_item(conn, item_id=row["id"], expected=ItemState.SCREENING, target=ItemState.REGENERATING,
                             actor=actor, detail={**summary, "feedback": [r.detail for r in failing]},
                             auto_retries=row["auto_retries"] + 1, claimed_by=None, claimed_until=None)
        report.to_regeneration += 1
        return
    flag = None
    if failing:
        flag = (f"automatic checks still failing after {row['auto_retries']} regeneration(s): "
                + "; ".join(f"{r.name} ({r.detail})" for r in failing))[:2000]
        report.flagged += 1
    elif pc.generate.mode == "solve" and any(r.name == "answer_matches_gold" and not r.passed for r in results):
        flag = next(r.detail for r in results if r.name == "answer_matches_gold")
        report.flagged += 1
    values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
    if flag:
        values["flag_reason"] = flag
    repo.transition_item(conn, item_id=row["id"], expected=ItemState.SCREENING, target=ItemState.IN_REVIEW,
                         actor=actor, detail={**summary, "flag": flag}, **values)
    enter_review(conn, project_id=row["project_id"], item_id=row["id"], rationale_id=rationale["id"], actor=actor)
    report.to_review += 1


async def run_screening(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig,
                        judge: LLMBackend | None = None, limit: int | None = None, batch_size: int = 200,
                        worker: str | None = None) -> ScreenReport:
    """Screen every item waiting in `screening` (or `limit` of them)."""
    worker = worker or work.worker_id()
    report = ScreenReport()
    bounds = ScreenBounds(pc.screen.min_steps, pc.screen.max_steps, pc.screen.min_chars, pc.screen.max_chars)
    with engine.begin() as conn:  # a killed screening run's batch is taken over now, not when its lease ends
        work.expire_dead_local_claims(conn, project_id=project["id"])
    with engine.connect() as conn:
        index = _fingerprint_index(conn, project["id"])
        rubric_body = repo.latest_rubric(conn, project_id=project["id"])
    while limit is None or report.screened < limit:
        n = batch_size if limit is None else min(batch_size, limit - report.screened)
        rows = await asyncio.to_thread(_load_batch, engine, project["id"], worker, n, pc.generate.claim_seconds)
        if not rows:
            break
        results_by_item: dict[str, list[CheckResult]] = {}
        for row in rows:
            rat = row["rationale"]
            if rat is None:
                results_by_item[row["id"]] = [CheckResult("parse", False, "no rationale version exists")]
                continue
            results_by_item[row["id"]] = run_checks(item=row, rationale=rat, mode=pc.generate.mode, bounds=bounds,
                                                    index=index, compare_reference=pc.screen.compare_reference,
                                                    max_distance=pc.screen.near_duplicate_bits)
            if rat.get("fingerprint") is not None:
                index.add(row["id"], rat["fingerprint"])
        if judge is not None:
            await _judge_all(judge, rows, results_by_item, rubric_body, report)

        def persist() -> None:
            with engine.begin() as conn:
                for row in rows:
                    try:
                        with conn.begin_nested():
                            if row["rationale"] is None:
                                conn.execute(update(items).where(items.c.id == row["id"])
                                             .values(claimed_by=None, claimed_until=None))
                                continue
                            _route(conn, row=row, results=results_by_item[row["id"]], pc=pc, worker=worker,
                                   report=report)
                            report.screened += 1
                    except repo.StaleStateError:
                        continue

        await asyncio.to_thread(persist)
    return report


async def _judge_all(judge: LLMBackend, rows: list[dict[str, Any]], results: dict[str, list[CheckResult]],
                     rubric_body: dict[str, Any], report: ScreenReport) -> None:
    async def one(row: dict[str, Any]) -> None:
        rat = row["rationale"]
        if rat is None or rat["parse_status"] != "ok":
            return
        messages, _ = build_judge_messages(row, rat["text"], rubric_body)
        try:
            completion = await judge.complete(messages, LLMParams(temperature=0.0, max_tokens=400))
        except LLMError as exc:
            results[row["id"]].append(CheckResult("judge", False, f"the judge could not be reached: {exc}"[:500]))
            report.judge_errors += 1
            return
        parsed = parse_judge(completion.text, rubric_body)
        if isinstance(parsed, str):
            results[row["id"]].append(CheckResult("judge", False, parsed))
            report.judge_errors += 1
        else:
            results[row["id"]].extend(parsed)
            report.judged += 1

    await asyncio.gather(*(one(r) for r in rows))
