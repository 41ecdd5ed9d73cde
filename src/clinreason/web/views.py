"""What the API and the pages show, assembled once: item histories, the review payload, progress.
Everything a reviewer sees passes through the blindness rules here (`visible_reviews`, redaction)."""

from __future__ import annotations

import re
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from clinreason.config import ReviewConfig
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.messages import Translatable
from clinreason.domain.records import Check, Event, Item, RationaleVersion, Review
from clinreason.domain.rubric import rubric_from_dict
from clinreason.domain.steps import Severity
from clinreason.stages import adjudicate
from clinreason.stages import history as step_history_stage
from clinreason.stages import review as stage
from clinreason.stages.settings import review_view
from clinreason.store import items, projects, queue, rationales, readmodels, reviews
from clinreason.store.common import NotFoundError, aware, now
from clinreason.web.auth import Principal
from clinreason.web.i18n import N_, _

SENIOR_ROLES = ("admin", "adjudicator")
HIDDEN_ACTOR = "user:another-expert"


class NotFound(Translatable, LookupError):
    """404: no such thing in the caller's project (a marked template and its values, domain/messages.py)."""


def project_row(conn: Connection, principal: Principal) -> dict[str, Any]:
    project = projects.get_project_by_id(conn, project_id=principal.project_id)
    if project is None:
        raise NotFound(N_("project '{project}' does not exist"), {"project": principal.project})
    return project


def review_config(conn: Connection, principal: Principal) -> ReviewConfig:
    """The `[review]` settings of the caller's project, as stored."""
    return ReviewConfig.from_stored(project_row(conn, principal)["config"])


def iso(value: Any) -> Any:
    value = aware(value) if hasattr(value, "tzinfo") else value
    return value.isoformat() if hasattr(value, "isoformat") else value


def _redact_actor(actor: str | None, principal: Principal) -> str | None:
    if principal.role in SENIOR_ROLES or not actor or not actor.startswith("user:") or actor == principal.actor:
        return actor
    return HIDDEN_ACTOR


Body = TypeVar("Body", bound=BaseModel)


def form_body(model: type[Body], **values: Any) -> Body:
    """Validate a page form with the JSON API's model: a bad field is a 422 naming it, as over JSON."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "form"
        raise stage.ReviewError(field, f"{field}: {first['msg']}") from None


def item_row(conn: Connection, principal: Principal, item_id: str) -> Item:
    item = items.get_item(conn, project_id=principal.project_id, item_id=item_id)
    if item is None:
        raise _not_found(principal, item_id)
    return item


def _not_found(principal: Principal, item_id: str) -> NotFound:
    return NotFound(N_("item {item_id} does not exist in project '{project}'"),
                    {"item_id": item_id, "project": principal.project})


def _senior(principal: Principal | None) -> bool:
    return principal is not None and principal.role in SENIOR_ROLES


def _is_probe(item: Item, principal: Principal | None) -> bool:
    """A calibration item seen by a reviewer: it must look like any other item in review."""
    return item.state == ItemState.CALIBRATION.value and not _senior(principal)


def _probe_event(event: Event) -> bool:
    """Events that would give a calibration item away: its results, and its moves into or out of the
    calibration state (whose detail names the known truth)."""
    states = {part.get("state") for part in (event.before, event.after) if isinstance(part, dict)}
    detail = event.detail if isinstance(event.detail, dict) else {}
    return event.kind.startswith("calibration.") or ItemState.CALIBRATION.value in states \
        or "calibration" in detail or "expect" in detail


def item_basics(item: Item, principal: Principal | None = None) -> dict[str, Any]:
    state = ItemState.IN_REVIEW.value if _is_probe(item, principal) else item.state
    return {
        "id": item.id, "question": item.question,
        "options": {label: text for label, text in item.options},
        "answer": list(item.answer_labels), "answer_text": item.answer_text,
        "language": item.language, "specialty": item.specialty, "context": item.context,
        "state": state, "strikes": item.strikes, "flag_reason": item.flag_reason,
    }


def rationale_dict(rat: RationaleVersion, principal: Principal) -> dict[str, Any]:
    return {
        "id": rat.id, "version": rat.version, "parent_version": rat.parent_version, "origin": rat.origin,
        "author": _redact_actor(rat.author, principal), "text": rat.text, "steps": rat.steps,
        "final_answer": rat.final_answer, "model": rat.model, "parse_status": rat.parse_status,
        # the model's own scratch work (`reasoning_content` / `<think>`), not part of the rationale; None if none
        "reasoning": rat.reasoning if rat.reasoning and rat.reasoning.strip() else None,
        "created_at": iso(rat.created_at),
    }


def check_dict(check: Check, version: int | None = None) -> dict[str, Any]:
    out = {"rationale_id": check.rationale_id, "name": check.name, "passed": check.passed,
           "blocking": check.blocking, "score": check.score, "detail": check.detail,
           "created_at": iso(check.created_at)}
    if version is not None:
        out["version"] = version
    return out


def review_dict(review: Review) -> dict[str, Any]:
    return {"id": review.id, "rationale_id": review.rationale_id, "version": review.version,
            "reviewer": review.reviewer, "verdict": review.verdict, "scores": review.scores,
            "comments": review.comments, "edited_text": review.edited_text, "seconds_spent": review.seconds_spent,
            "rubric_version": review.rubric_version, "created_at": iso(review.created_at),
            "steps": list(review.steps)}


def _event_dict(event: Event, principal: Principal, unlocked: set[str]) -> dict[str, Any]:
    detail = dict(event.detail or {})
    actor = _redact_actor(event.actor, principal)
    if actor == HIDDEN_ACTOR and event.kind.startswith(("review.", "assignment.")) \
            and detail.get("rationale_id") not in unlocked:
        detail = {k: v for k, v in detail.items() if k in ("version",)}
    return {"kind": event.kind, "actor": actor, "at": iso(event.at), "before": event.before,
            "after": event.after, "detail": detail}


def item_history(conn: Connection, principal: Principal, item_id: str) -> dict[str, Any]:
    """GET /api/items/{id}: the item, every version, every check, the reviews this caller may see, events."""
    history = readmodels.item_history(conn, project_id=principal.project_id, item_id=item_id)
    if history is None:
        raise _not_found(principal, item_id)
    item: Item = history["item"]
    versions: list[RationaleVersion] = history["versions"]
    version_of = {v.id: v.version for v in versions}
    visible = stage.visible_reviews(conn, item_id=item_id, viewer_id=principal.user_id, viewer_role=principal.role)
    unlocked = {r.rationale_id for r in history["reviews"] if r.reviewer_id == principal.user_id}
    reference = _reference(item, principal, review_config(conn, principal).show_reference, reviewed=bool(unlocked))
    return {
        **item_basics(item, principal), **reference,
        "versions": [rationale_dict(v, principal) for v in versions],
        "checks": [check_dict(c, version_of.get(c.rationale_id)) for c in history["checks"]],
        "reviews": [review_dict(r) for r in visible],
        # marks come only from the visible reviews: the same blindness as the reviews themselves
        "step_history": step_history_stage.step_history(versions, visible),
        "events": [_event_dict(e, principal, unlocked) for e in history["events"]
                   if not (_is_probe(item, principal) and _probe_event(e))],
        "sources": _sources(history["sources"]),
    }


def _sources(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"source": s["source"], "file": s["file"], "record": s["record"], "subject": s["subject"],
             "license": s["license"]} for s in rows]


def may_see_reference(principal: Principal, setting: str, *, reviewed: bool) -> bool:
    """Whether the caller may read the bank's own reference explanation of an item (`[review] show_reference`):
    adjudicators and admins always; a reviewer with `always`, with `after_submit` only once their own review
    (`reviewed`: of the version in front of them on the review screen, of any version on the item page) is
    in, so the reference cannot anchor their first judgment; with `never`, no reviewer, anywhere."""
    if _senior(principal):
        return True
    return setting == "always" or (setting == "after_submit" and reviewed)


def _reference(item: Item, principal: Principal, setting: str, *, reviewed: bool) -> dict[str, Any]:
    """{"reference_explanation": text} where the caller may see it and the item has one; else nothing (the
    key is left out of the payload altogether)."""
    text = item.reference_explanation
    if not text or not text.strip() or not may_see_reference(principal, setting, reviewed=reviewed):
        return {}
    return {"reference_explanation": text}


def assignment_payload(conn: Connection, principal: Principal, assignment_id: str) -> dict[str, Any]:
    """What a reviewer needs to review one leased version (GET /api/queue/next and the review screen)."""
    a = stage.get_assignment(conn, project_id=principal.project_id, assignment_id=assignment_id,
                             reviewer_id=principal.user_id)
    item = item_row(conn, principal, a.item_id)
    rat = rationales.get_version(conn, rationale_id=a.rationale_id)
    if rat is None:
        raise NotFound(N_("the version of assignment {assignment_id} does not exist"), {"assignment_id": assignment_id})
    parent = None
    if rat.parent_version is not None:
        found = next((v for v in rationales.versions_of(conn, item_id=item.id) if v.version == rat.parent_version),
                     None)
        parent = rationale_dict(found, principal) if found else None
    draft = stage.load_draft(conn, rationale_id=rat.id, reviewer_id=principal.user_id)
    try:
        config, rubric = review_view(conn, principal.project_id)
    except NotFoundError:
        project_row(conn, principal)  # the project is gone: its own 404
        raise
    # the reference explanation: with `after_submit`, only once this review is in (the lease is submitted)
    reference = _reference(item, principal, config.show_reference, reviewed=a.status == "submitted")
    return {
        "assignment_id": a.id, "status": a.status, "expires_at": iso(a.expires_at),
        "created_at": iso(a.created_at),
        "item": {**item_basics(item, principal), **reference,
                 "sources": _sources(items.item_source_rows(conn, item_id=item.id))},
        "rationale": rationale_dict(rat, principal),
        "parent": parent,
        "checks": [check_dict(c, rat.version) for c in rationales.checks_of(conn, rationale_ids=[rat.id])],
        "rubric": rubric,
        "draft": {"body": draft["body"], "seconds_spent": draft["seconds_spent"],
                  "updated_at": iso(draft["updated_at"])} if draft else None,
    }


def escalated_items(conn: Connection, principal: Principal, limit: int = 500) -> list[dict[str, Any]]:
    """Escalated items of the caller's project, longest waiting first."""
    rows = adjudicate.adjudication_queue(conn, project_id=principal.project_id, limit=limit)
    return [{"id": i.id, "question": i.question, "specialty": i.specialty, "strikes": i.strikes,
             "flag_reason": i.flag_reason, "updated_at": iso(i.updated_at)} for i in rows]


def reviewer_progress(conn: Connection, principal: Principal, *, at: datetime | None = None) -> dict[str, Any]:
    """The caller's own progress in the project: reviews in all (and hours), today and this week (UTC days,
    weeks from Monday), the items waiting for them (in one of their specialties, when they have any: the
    in-review items whose current version they could still be given), and their median seconds per review
    (None before the first)."""
    at = (at or now()).astimezone(UTC)
    me = {"project_id": principal.project_id, "reviewer_id": principal.user_id}
    count, seconds = reviews.reviewer_totals(conn, **me)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    spent = reviews.review_seconds(conn, **me)
    waiting = queue.waiting_for(conn, **me, author=principal.actor, specialties=principal.specialties,
                                overlap=review_config(conn, principal).policy().base_overlap, at=at)
    return {"reviews": count, "hours": round(seconds / 3600, 2),
            "today": reviews.reviews_since(conn, **me, since=day),
            "this_week": reviews.reviews_since(conn, **me, since=week),
            "waiting": waiting, "specialties": list(principal.specialties),
            "median_seconds": round(statistics.median(spent)) if spent else None}


def open_leases(conn: Connection, principal: Principal) -> int:
    return reviews.open_lease_count(conn, project_id=principal.project_id, at=now())


# --- steps on the page -------------------------------------------------------------------------------

_FINAL_LINE = re.compile(r"^\W*(?:final\s+answer|answer|最终答案|答案|正确答案)\W*[:：]", re.IGNORECASE)


def is_final_answer_line(text: str) -> bool:
    """A step that is itself the "Final answer: X" line (an expert's edit keeps it as its last line)."""
    return bool(_FINAL_LINE.match(text or ""))


def step_display(rationale: dict[str, Any]) -> dict[str, Any]:
    """How a version's steps are shown: numbered 1… as the marks count them; whether the last step already
    says the final answer (then it is not repeated below the list); whether the text as written holds
    more than the steps (then it is offered, folded, beside them)."""
    steps = [str(s) for s in rationale.get("steps") or []]
    final_in_steps = bool(steps) and is_final_answer_line(steps[-1])
    lines = [line.strip() for line in (rationale.get("text") or "").splitlines() if line.strip()]
    return {
        "steps": [{"n": n, "text": text, "final": final_in_steps and n == len(steps)}
                  for n, text in enumerate(steps, 1)],
        "final_in_steps": final_in_steps,
        "text_differs": bool(steps) and [s.strip() for s in steps] != lines,
    }


def step_taxonomy(rubric_body: dict[str, Any], language: str | None) -> list[dict[str, Any]]:
    """The rubric's step error categories, numbered for the keyboard (1…), each with its one-line description
    in `language` where the rubric has it (English otherwise)."""
    rubric = rubric_from_dict(rubric_body)
    return [{"key": k, "name": c.name, "description": c.description(language or "en")}
            for k, c in enumerate(rubric.step_errors, 1)]


SEVERITIES = [{"key": k, "name": s.value} for k, s in enumerate(Severity, 1)]


# --- what the pages show for the codes they hold ---------------------------------------------------

def rubric_view(rubric_body: dict[str, Any], language: str) -> dict[str, Any]:
    """The rubric as the review screen shows it, in `language` (each text in English where the rubric has
    none in it): dimensions with title, description, threshold and anchors ("1".."5" -> text)."""
    rubric = rubric_from_dict(rubric_body)
    return {"version": rubric.version, "scale": [rubric.scale_min, rubric.scale_max],
            "dimensions": [{"name": d.name, "title": d.title_in(language), "description": d.description_in(language),
                            "threshold": d.threshold,
                            "anchors": {str(k): text for k, text in d.anchors_in(language).items()}}
                           for d in rubric.dimensions]}


#: the codes records hold, as the pages name them (translated where shown: `label`)
LABELS: dict[str, dict[str, str]] = {
    "origin": {"generated": N_("generated"), "regenerated": N_("regenerated"), "edited": N_("edited"),
               "adjudicated": N_("adjudicated")},
    "verdict": {"accept": N_("Accept"), "edit": N_("Edit"), "regenerate": N_("Regenerate"),
                "flag_question": N_("Flag question")},
    "severity": {"minor": N_("minor"), "major": N_("major"), "critical": N_("critical")},
    "mark": {"ok": N_("ok"), "error": N_("error")},
    "state": {"imported": N_("imported"), "generating": N_("generating"), "screening": N_("screening"),
              "regenerating": N_("regenerating"), "in_review": N_("in review"), "accepted": N_("accepted"),
              "escalated": N_("escalated"), "excluded": N_("excluded"), "failed": N_("failed"),
              "calibration": N_("calibration"), "held": N_("held by the privacy gate")},
}


def label(kind: str, value: Any) -> str:
    """A code (`origin`, `verdict`, `severity`, `mark` or item `state`) as the page names it, in the current
    language; an unknown code as it is."""
    text = LABELS.get(kind, {}).get(value) if isinstance(value, str) else None
    return _(text) if text else ("" if value is None else str(value))
