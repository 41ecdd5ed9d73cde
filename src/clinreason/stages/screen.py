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

from sqlalchemy import Connection, Engine

from clinreason.config import ProjectConfig
from clinreason.domain.checks import CheckResult, FingerprintIndex, ScreenBounds, run_checks
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Check, Item, RationaleVersion
from clinreason.domain.rubric import rubric_from_dict
from clinreason.llm.base import LLMBackend, LLMError, LLMParams
from clinreason.prompts import render
from clinreason.stages import privacy
from clinreason.stages.consensus import enter_review
from clinreason.stages.generate import prompt_view
from clinreason.stages.settings import project_config
from clinreason.store import db, projects, rationales, reviews, work
from clinreason.store import privacy as privacy_store
from clinreason.store.common import StaleStateError
from clinreason.store.items import transition_item
from clinreason.store.projects import latest_rubric


@dataclass
class ScreenReport:
    screened: int = 0
    to_review: int = 0
    to_regeneration: int = 0
    flagged: int = 0
    judged: int = 0
    judge_errors: int = 0
    held: int = 0  # items the privacy gate held before the judge: nothing about them was sent
    failed_checks: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- the LLM judge: two pure functions ------------------------------------------------------------

def build_judge_messages(item: Item, rationale_text: str, rubric_body: dict[str, Any]):
    rubric = rubric_from_dict(rubric_body)
    dims = [{"name": d.name, "description": d.description} for d in rubric.dimensions]
    return render("judge", item.language, item=prompt_view(item), rationale=rationale_text, dimensions=dims,
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

@dataclass(slots=True)
class _Draft:
    """A claimed item and the version to screen (None when the item has none)."""

    item: Item
    rationale: RationaleVersion | None
    #: the parent version's steps reviewers marked `error` (number, text), for `marked_steps_revised`
    marked_steps: list[tuple[int, str]] = field(default_factory=list)
    #: what the privacy gate decided about the judge request (None: no judge request, or not scanned)
    privacy: privacy.Decision | None = None


def _load_batch(engine: Engine, project_id: int, worker: str, limit: int, lease: int) -> list[_Draft]:
    with db.transaction(engine) as conn:
        claimed = work.claim(conn, project_id=project_id, state=ItemState.SCREENING, worker=worker, limit=limit,
                             lease_seconds=lease)
        latest = rationales.latest_versions(conn, item_ids=[item.id for item in claimed])
        marked = reviews.marked_parent_steps(conn, versions=list(latest.values()))
    return [_Draft(item, latest.get(item.id), marked.get(latest[item.id].id, []) if item.id in latest else [])
            for item in claimed]


def fingerprint_index(conn: Connection, project_id: int) -> FingerprintIndex:
    """Latest fingerprint per item (one query over every version of the project, growing with it: read once
    per screening batch; one edit looks its neighbours up instead, see `screen_edited_version`)."""
    index = FingerprintIndex()
    for item_id, fp in rationales.latest_fingerprints(conn, project_id=project_id).items():
        index.add(item_id, fp)
    return index


def _checks(draft: _Draft, *, pc: ProjectConfig, bounds: ScreenBounds, index: FingerprintIndex) -> list[CheckResult]:
    item, rat = draft.item, draft.rationale
    assert rat is not None
    return run_checks(item=item, rationale=rat, mode=pc.generate.mode, bounds=bounds, index=index,
                      compare_reference=pc.screen.compare_reference, max_distance=pc.screen.near_duplicate_bits,
                      marked_steps=draft.marked_steps)


def _route(conn: Connection, *, draft: _Draft, results: list[CheckResult], pc: ProjectConfig, worker: str,
           report: ScreenReport) -> None:
    item, rationale = draft.item, draft.rationale
    assert rationale is not None
    blocking = set(pc.screen.blocking)
    if pc.generate.mode == "solve":
        blocking.discard("answer_matches_gold")  # a blind disagreement is for experts to see, not to hide
    rationales.add_checks(conn, [Check(rationale_id=rationale.id, name=r.name, passed=r.passed, score=r.score,
                                       detail=r.detail, blocking=r.name in blocking) for r in results])
    failing = [r for r in results if not r.passed and r.name in blocking]
    for r in results:
        if not r.passed:
            report.failed_checks[r.name] = report.failed_checks.get(r.name, 0) + 1
    actor = f"worker:{worker}"
    summary = {"rationale_id": rationale.id, "version": rationale.version,
               "failed": [r.name for r in results if not r.passed]}
    if failing and item.auto_retries < pc.generate.max_auto_retries:
        transition_item(conn, item_id=item.id, expected=ItemState.SCREENING, target=ItemState.REGENERATING,
                        actor=actor, detail={**summary, "feedback": [r.detail for r in failing]},
                        auto_retries=item.auto_retries + 1, claimed_by=None, claimed_until=None)
        report.to_regeneration += 1
        return
    flag = None
    if failing:
        flag = (f"automatic checks still failing after {item.auto_retries} regeneration(s): "
                + "; ".join(f"{r.name} ({r.detail})" for r in failing))[:2000]
        report.flagged += 1
    elif pc.generate.mode == "solve" and any(r.name == "answer_matches_gold" and not r.passed for r in results):
        flag = next(r.detail for r in results if r.name == "answer_matches_gold")
        report.flagged += 1
    values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
    if flag:
        values["flag_reason"] = flag
    transition_item(conn, item_id=item.id, expected=ItemState.SCREENING, target=ItemState.IN_REVIEW,
                    actor=actor, detail={**summary, "flag": flag}, **values)
    enter_review(conn, project_id=item.project_id, item_id=item.id, rationale_id=rationale.id, actor=actor)
    report.to_review += 1


def screen_edited_version(conn: Connection, *, item: Item, version: RationaleVersion) -> list[CheckResult]:
    """An expert's edit is screened like any other version, in the review's transaction: every automatic
    check runs and is stored, none blocking — the results are hints for the next reviewer, never a
    block on an expert's text (the version goes straight back to review).

    The near-duplicate hint looks the edit's fingerprint up through the block indexes (migration 0016), in
    this transaction: a handful of rows, where reading every item's latest fingerprint held SQLite's one
    write turn for a query growing with the project."""
    project = projects.get_project_by_id(conn, project_id=item.project_id)
    assert project is not None
    pc = project_config(conn, project)
    bounds = ScreenBounds(pc.screen.min_steps, pc.screen.max_steps, pc.screen.min_chars, pc.screen.max_chars)
    index = rationales.StoredNeighbours(conn, item.project_id)
    marked = reviews.marked_parent_steps(conn, versions=[version]).get(version.id, [])
    results = run_checks(item=item, rationale=version, mode=pc.generate.mode, bounds=bounds, index=index,
                         compare_reference=pc.screen.compare_reference, max_distance=pc.screen.near_duplicate_bits,
                         marked_steps=marked)
    rationales.add_checks(conn, [Check(rationale_id=version.id, name=r.name, passed=r.passed, score=r.score,
                                       detail=r.detail, blocking=False) for r in results])
    return results


async def run_screening(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig,
                        judge: LLMBackend | None = None, limit: int | None = None, batch_size: int = 200,
                        worker: str | None = None) -> ScreenReport:
    """Screen every item waiting in `screening` (or `limit` of them)."""
    worker = worker or work.worker_id()
    report = ScreenReport()
    bounds = ScreenBounds(pc.screen.min_steps, pc.screen.max_steps, pc.screen.min_chars, pc.screen.max_chars)
    with db.transaction(engine) as conn:  # a killed screening run's batch is taken over now, not when its lease ends
        work.expire_dead_local_claims(conn, project_id=project["id"])
    with engine.connect() as conn:
        index = fingerprint_index(conn, project["id"])
        rubric_body = latest_rubric(conn, project_id=project["id"])
    gate = privacy.policy_for(pc, judge=True)
    while limit is None or report.screened < limit:
        n = batch_size if limit is None else min(batch_size, limit - report.screened)
        drafts = await asyncio.to_thread(_load_batch, engine, project["id"], worker, n, pc.generate.claim_seconds)
        if not drafts:
            break
        results_by_item: dict[str, list[CheckResult]] = {}
        for draft in drafts:
            if draft.rationale is None:
                results_by_item[draft.item.id] = [CheckResult("parse", False, "no rationale version exists")]
                continue
            results_by_item[draft.item.id] = _checks(draft, pc=pc, bounds=bounds, index=index)
            if draft.rationale.fingerprint is not None:
                index.add(draft.item.id, draft.rationale.fingerprint)
        if judge is not None:
            await asyncio.to_thread(_judge_gate, engine, drafts, gate)
            await _judge_all(judge, drafts, results_by_item, rubric_body, report)

        def persist(drafts: list[_Draft] = drafts, results_by_item: dict[str, list[CheckResult]] = results_by_item
                    ) -> None:
            with db.transaction(engine) as conn:
                for draft in drafts:
                    try:
                        with conn.begin_nested():
                            if draft.rationale is None:
                                work.release_claim(conn, item_id=draft.item.id)
                                continue
                            if draft.privacy is not None and draft.privacy.action == privacy.HOLD:
                                privacy.hold(conn, item=draft.item, kind=privacy.JUDGE, expected=ItemState.SCREENING,
                                             decision=draft.privacy, policy=gate, actor=f"worker:{worker}")
                                report.held += 1
                                continue  # its checks are run again when it is released
                            if draft.privacy is not None and draft.privacy.action == privacy.FLAG:
                                privacy.flag(conn, item=draft.item, kind=privacy.JUDGE, decision=draft.privacy,
                                             policy=gate, actor=f"worker:{worker}")
                            _route(conn, draft=draft, results=results_by_item[draft.item.id], pc=pc, worker=worker,
                                   report=report)
                            report.screened += 1
                    except StaleStateError:
                        continue

        await asyncio.to_thread(persist)
    return report


def _judge_gate(engine: Engine, drafts: list[_Draft], gate: privacy.GatePolicy) -> None:
    """The privacy gate before the judge: each draft the judge would be sent gets its decision (a held one
    is not sent; persist moves it to `held`)."""
    scanner = privacy.scanner_for(gate)
    judged = [d for d in drafts if d.rationale is not None and d.rationale.parse_status == "ok"]
    if scanner is None or not judged:
        return
    with engine.connect() as conn:
        released = privacy_store.released_digests(conn, item_ids=[d.item.id for d in judged])
    for draft in judged:
        assert draft.rationale is not None
        draft.privacy = privacy.decide(gate, scanner, privacy.judge_segments(draft.item, draft.rationale.text),
                                       language=draft.item.language, released=released.get(draft.item.id, set()))


async def _judge_all(judge: LLMBackend, drafts: list[_Draft], results: dict[str, list[CheckResult]],
                     rubric_body: dict[str, Any], report: ScreenReport) -> None:
    async def one(draft: _Draft) -> None:
        rat = draft.rationale
        if rat is None or rat.parse_status != "ok":
            return
        if draft.privacy is not None and draft.privacy.action == privacy.HOLD:
            return  # nothing about it is sent
        item_id = draft.item.id
        messages, _ = build_judge_messages(draft.item, rat.text, rubric_body)
        try:
            completion = await judge.complete(messages, LLMParams(temperature=0.0, max_tokens=400))
        except LLMError as exc:
            results[item_id].append(CheckResult("judge", False, f"the judge could not be reached: {exc}"[:500]))
            report.judge_errors += 1
            return
        parsed = parse_judge(completion.text, rubric_body)
        if isinstance(parsed, str):
            results[item_id].append(CheckResult("judge", False, parsed))
            report.judge_errors += 1
        else:
            results[item_id].extend(parsed)
            report.judged += 1

    await asyncio.gather(*(one(d) for d in drafts))
