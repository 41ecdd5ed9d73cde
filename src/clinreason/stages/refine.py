"""The refine stage: guided regeneration. The prompt carries the previous version, the rubric
dimensions that fell short with their scores, the reviewers' comments, and the automatic checks that
failed — so the model fixes what experts (or checks) found instead of starting over."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from clinreason.domain.rubric import rubric_from_dict
from clinreason.llm.base import ChatMessage
from clinreason.prompts import render
from clinreason.stages.generate import prompt_view
from clinreason.store.tables import checks, rationales, reviews


def regeneration_feedback(conn: Connection, *, item_id: str, rubric_body: dict[str, Any],
                          blocking: list[str]) -> dict[str, Any]:
    """Everything the regeneration prompt needs about the latest version: its text, the failing rubric
    dimensions (scores of every reviewer), all comments (reviewers anonymised as Reviewer 1, 2 ...), and
    failed automatic checks."""
    prev = conn.execute(select(rationales).where(rationales.c.item_id == item_id)
                        .order_by(rationales.c.version.desc()).limit(1)).mappings().first()
    if prev is None:
        raise LookupError(f"item {item_id} has no rationale to regenerate from")
    rubric = rubric_from_dict(rubric_body)
    revs = conn.execute(select(reviews).where(reviews.c.rationale_id == prev["id"])
                        .order_by(reviews.c.created_at, reviews.c.id)).mappings().all()
    failed_dimensions = []
    for dim in rubric.dimensions:
        scores = [r["scores"].get(dim.name) for r in revs if r["scores"].get(dim.name) is not None]
        if scores and min(scores) < dim.threshold:
            failed_dimensions.append({"name": dim.name, "title": dim.title, "scores": scores, "threshold": dim.threshold})
    comments = []
    for n, r in enumerate(revs, 1):
        for dim_name, text in (r["comments"] or {}).items():
            if text and str(text).strip():
                title = rubric.dimension(dim_name).title if dim_name in rubric.names else (dim_name if dim_name != "general" else None)
                comments.append({"reviewer": f"Reviewer {n}", "dimension": title, "text": str(text).strip()})
    failed_checks = [
        {"name": c["name"], "detail": c["detail"]}
        for c in conn.execute(select(checks).where(checks.c.rationale_id == prev["id"], checks.c.passed.is_(False))
                              .order_by(checks.c.id)).mappings()
        if c["name"] in blocking or not revs
    ]
    return {"previous": {"version": prev["version"], "text": prev["text"], "id": prev["id"]},
            "failed_dimensions": failed_dimensions, "comments": comments, "failed_checks": failed_checks,
            "scale_max": rubric.scale_max, "reviews": len(revs)}


def build_regeneration_messages(item: dict[str, Any], feedback: dict[str, Any], *, mode: str
                                ) -> tuple[list[ChatMessage], str]:
    return render("regenerate", item["language"], item=prompt_view(item), mode=mode,
                  previous=feedback["previous"], failed_dimensions=feedback["failed_dimensions"],
                  comments=feedback["comments"], failed_checks=feedback["failed_checks"],
                  scale_max=feedback["scale_max"])
