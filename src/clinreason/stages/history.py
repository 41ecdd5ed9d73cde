"""An item's step history: for every rationale version, how its steps came from its parent's (kept,
changed, added, removed) and the step marks its reviews gave. Pure over records (no SQL), so the item
page, the JSON API and `clinreason history` show the same thing.

Blindness is the caller's business: pass only the reviews the viewer may see
(`stages.review.visible_reviews`); a mark never travels without its review."""

from __future__ import annotations

from typing import Any

from clinreason.domain.records import RationaleVersion, Review
from clinreason.domain.steps import StepChange, change_summary, step_changes


def compare_steps(old: list[str], new: list[str]) -> list[StepChange]:
    """`domain.steps.step_changes` (blind to the steps' own numbering: a step moved down by an inserted one
    is unchanged, not rewritten)."""
    return step_changes(old, new)


def _parent_of(version: RationaleVersion, by_number: dict[int, RationaleVersion]) -> RationaleVersion | None:
    number = version.parent_version if version.parent_version is not None else version.version - 1
    return by_number.get(number) if number != version.version else None


def _mark_row(review: Review, mark: dict[str, Any]) -> dict[str, Any]:
    return {"step": mark.get("step"), "review_id": review.id, "reviewer": review.reviewer,
            "verdict": mark.get("verdict"), "category": mark.get("category"),
            "severity": mark.get("severity"), "note": mark.get("note"), "correction": mark.get("correction")}


def step_history(versions: list[RationaleVersion], reviews: list[Review]) -> list[dict[str, Any]]:
    """One entry per version, in the order given (oldest first from the store):

    {"version": 2, "rationale_id": "…", "parent_version": 1 | None,
     "changes": {"changed": [2], "added": [4], "removed": [3]} | None,   # domain.steps.change_summary vs parent;
                                                                         # None for a version without a parent
     "step_changes": [StepChange.to_dict(), …],                          # the full alignment ([] without parent)
     "steps": [{"step": 1, "text": "…", "change": "unchanged|changed|added" | None, "was": 1 | None,
                "marks": [mark, …]}, …],
     "removed": [{"step": 3, "text": "…"}, …],                           # parent steps gone (numbered in the parent)
     "marks": [{"step", "review_id", "reviewer", "verdict", "category", "severity", "note", "correction"}, …]}
                                                                         # by step, then review order

    `reviews` are Review records (with `reviewer` and `rationale_id`), already filtered for the viewer."""
    by_number = {v.version: v for v in versions}
    out: list[dict[str, Any]] = []
    for version in versions:
        parent = _parent_of(version, by_number)
        changes = compare_steps(list(parent.steps), list(version.steps)) if parent else []
        by_new = {c.new: c for c in changes if c.new is not None}
        marks = sorted(
            (_mark_row(review, mark) for review in reviews if review.rationale_id == version.id for mark in review.steps),
            key=lambda m: m["step"] if isinstance(m["step"], int) else 0)
        steps = []
        for number, text in enumerate(version.steps, 1):
            change = by_new.get(number)
            steps.append({"step": number, "text": text, "change": change.kind if change else None,
                          "was": change.old if change else None,
                          "marks": [m for m in marks if m["step"] == number]})
        out.append({
            "version": version.version, "rationale_id": version.id,
            "parent_version": parent.version if parent else None,
            "changes": change_summary(changes) if parent else None,
            "step_changes": [c.to_dict() for c in changes],
            "steps": steps,
            "removed": [{"step": c.old, "text": c.old_text} for c in changes if c.kind == "removed"],
            "marks": marks,
        })
    return out
