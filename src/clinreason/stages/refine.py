"""The refine stage: guided regeneration. The prompt carries the previous version, the rubric
dimensions that fell short with every reviewer's score, the reviewers' comments, the steps reviewers
marked as errors (number, text, category, severity, note, correction) and the automatic checks that
failed — so the model fixes what experts (or checks) found, keeping the unmarked steps, instead of
starting over.

What experts said is the `Feedback` consensus computed and stored when it sent the version back
(stages/consensus.py); this stage renders it, and never re-reads the reviews."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from clinreason.domain.consensus import Feedback
from clinreason.domain.records import Item
from clinreason.domain.rubric import Rubric, rubric_from_dict
from clinreason.llm.base import ChatMessage
from clinreason.prompts import render
from clinreason.stages.generate import prompt_view
from clinreason.store import rationales as rationale_store
from clinreason.store import reviews as review_store


def render_marked_steps(rubric: Rubric, feedback: Feedback | None, steps: list[str], *,
                        language: str) -> list[dict[str, Any]]:
    """Each step reviewers marked as an error, in step order: its number, its text in the previous version,
    and every reviewer's mark on it (category with its description, severity, note, correction),
    reviewers anonymised as in `render_feedback`."""
    if feedback is None or not feedback.step_marks:
        return []
    numbers: dict[str, int] = {}
    for reviewer, _dim, _text in feedback.comments:
        numbers.setdefault(reviewer, len(numbers) + 1)
    by_step: dict[int, list[dict[str, Any]]] = {}
    for reviewer, mark in feedback.step_marks:
        n = numbers.setdefault(reviewer, len(numbers) + 1)
        category = rubric.step_error(mark.category or "")
        by_step.setdefault(mark.step, []).append({
            "reviewer": f"Reviewer {n}", "category": mark.category,
            "category_description": category.description(language) if category else "",
            "severity": mark.severity.value if mark.severity else None, "note": mark.note,
            "correction": mark.correction})
    return [{"number": step, "text": steps[step - 1] if 0 < step <= len(steps) else "", "marks": marks}
            for step, marks in sorted(by_step.items())]


def render_feedback(rubric: Rubric, feedback: Feedback | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The failing dimensions (title, every score, threshold) and the comments, reviewers anonymised as
    Reviewer 1, 2 ... in the order they reviewed."""
    if feedback is None:
        return [], []
    failed = [{"name": d.name, "title": d.title, "scores": feedback.failing[d.name], "threshold": d.threshold}
              for d in rubric.dimensions if d.name in feedback.failing]
    numbers: dict[str, int] = {}
    comments = []
    for reviewer, dimension, text in feedback.comments:
        n = numbers.setdefault(reviewer, len(numbers) + 1)
        title = rubric.dimension(dimension).title if dimension in rubric.names else (
            dimension if dimension != "general" else None)
        comments.append({"reviewer": f"Reviewer {n}", "dimension": title, "text": text})
    return failed, comments


def regeneration_feedback(conn: Connection, *, item_id: str, rubric_body: dict[str, Any],
                          blocking: list[str], language: str = "en") -> dict[str, Any]:
    """Everything the regeneration prompt needs about the latest version: its text, the stored reviewer
    feedback rendered for the prompt, and the automatic checks that failed (blocking ones when experts
    reviewed it; all of them when it came straight from screening)."""
    prev = rationale_store.latest_version(conn, item_id=item_id)
    if prev is None:
        raise LookupError(f"item {item_id} has no rationale to regenerate from")
    rubric = rubric_from_dict(rubric_body)
    feedback = review_store.feedback_for(conn, rationale_id=prev.id)
    failed_dimensions, comments = render_feedback(rubric, feedback)
    marked_steps = render_marked_steps(rubric, feedback, prev.steps, language=language)
    failed_checks = [{"name": c.name, "detail": c.detail}
                     for c in rationale_store.checks_of(conn, rationale_ids=[prev.id], failed_only=True)
                     if c.name in blocking or feedback is None]
    return {"previous": {"version": prev.version, "text": prev.text, "id": prev.id},
            "failed_dimensions": failed_dimensions, "comments": comments, "failed_checks": failed_checks,
            "marked_steps": marked_steps,
            "scale_max": rubric.scale_max, "reviewed": feedback is not None}


def build_regeneration_messages(item: Item, feedback: dict[str, Any], *, mode: str) -> tuple[list[ChatMessage], str]:
    return render("regenerate", item.language, item=prompt_view(item), mode=mode,
                  previous=feedback["previous"], failed_dimensions=feedback["failed_dimensions"],
                  comments=feedback["comments"], failed_checks=feedback["failed_checks"],
                  marked_steps=feedback.get("marked_steps") or [],
                  scale_max=feedback["scale_max"])
