"""The review screen: the reviewer's current item, autosave, live diff of an edit, submitting, skipping;
beside the rationale the model's reasoning trace, the bank's reference explanation (`[review] show_reference`)
and the reviewer's own progress. Everything is shown in the request's language (web/i18n.py)."""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from clinreason.stages import review as stage
from clinreason.store.common import now
from clinreason.store.projects import latest_rubric
from clinreason.web import api_review, i18n, views
from clinreason.web.auth import Principal, ReviewerUser
from clinreason.web.deps import page, request_language
from clinreason.web.i18n import N_, _

router = APIRouter(include_in_schema=False)

NOTICES = {
    "submitted": N_("Review saved."),
    "edited": N_("Your edit was saved as a new version; another expert will review it."),
    "empty": N_("Nothing to review for you right now. Check back later."),
    "released": N_("Item given back to the pool."),
}


def notice_text(notice: str | None) -> str | None:
    """The notice a redirect asked for (`?notice=`), in the request's language; None for none (or junk)."""
    text = NOTICES.get(notice or "")
    return _(text) if text else None


def js_messages() -> dict[str, str]:
    """What app.js says itself, in the request's language: the page renders it into a JSON data block
    (`#review-i18n`; the CSP allows no inline script). `{step}`, `{total}` and `{dim}` are filled in there."""
    return {
        "stepOf": _("{step} of {total}"),
        "notAnError": _("Step {step} is not marked as an error: press x first."),
        "digitsInStepMode": _("In step mode the number keys pick an error's category and severity: press x to mark "
                              "step {step} as an error, or Esc to go back to scoring."),
        "scoreFirst": _("Score every dimension first: {dim} has no score."),
    }


STEP_FIELD = re.compile(r"step\.(\d{1,4})\.(verdict|category|severity|note|correction)")
STEP_ERROR_FIELD = re.compile(r"steps\[(\d+)\]")


def form_steps(form: FormData) -> list[dict[str, Any]]:
    """Step marks from `step.<n>.verdict|category|severity|note|correction` (n = the step number, 1…) as the
    API's `steps` list, by step. Empty fields are left out; a step with nothing filled in is no mark. A step
    with text but no verdict is kept (without one), so submitting says so instead of dropping the text."""
    marks: dict[int, dict[str, Any]] = {}
    for key, value in form.multi_items():
        match = STEP_FIELD.fullmatch(key)
        if match is None or not isinstance(value, str):
            continue
        number, field = int(match.group(1)), match.group(2)
        entry = marks.setdefault(number, {"step": number})
        if value.strip():
            entry[field] = value.strip() if field in ("verdict", "category", "severity") else value
    return [entry for _, entry in sorted(marks.items()) if len(entry) > 1]


def form_to_body(form: FormData) -> dict[str, Any]:
    """The review form as the JSON body the API takes (scores from `score.<dim>`, comments from `comment.<dim>`,
    step marks from `step.<n>.<field>`, see `form_steps`)."""
    scores: dict[str, Any] = {}
    comments: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key.startswith("score.") and value:
            scores[key[6:]] = int(value) if value.isdigit() else value
        elif key.startswith("comment."):
            comments[key[8:]] = value
    seconds = form.get("seconds_spent")
    try:
        seconds_spent = float(seconds) if isinstance(seconds, str) and seconds else None
    except ValueError:
        seconds_spent = None
    edited = form.get("edited_text")
    return {"verdict": form.get("verdict") or None, "scores": scores, "comments": comments,
            "edited_text": edited if isinstance(edited, str) else None, "seconds_spent": seconds_spent,
            "editing": form.get("editing") == "1", "steps": form_steps(form)}


def judge_hints(checks: list[dict[str, Any]], dimensions: list[str]) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """Split checks into LLM-judge pre-scores (per dimension where the name says which) and automatic checks."""
    per_dim: dict[str, dict] = {}
    judge: list[dict] = []
    automatic: list[dict] = []
    for check in checks:
        name = check["name"].lower()
        if "judge" not in name:
            automatic.append(check)
            continue
        judge.append(check)
        for dim in dimensions:
            if name.endswith(dim.lower()):
                per_dim[dim] = check
    return per_dim, judge, automatic


def review_context(conn, principal: Principal, assignment_id: str, *, lang: str, values: dict[str, Any] | None = None,
                   error: stage.ReviewError | None = None) -> dict[str, Any]:
    """The review screen's context, in `lang` (the request's language): the rubric's texts and the step error
    taxonomy in it, English where the rubric has none in it."""
    payload = views.assignment_payload(conn, principal, assignment_id)
    rubric = views.rubric_view(payload["rubric"], lang)
    draft = payload["draft"]
    values = values if values is not None else (draft["body"] if draft else {})
    seconds = (values.get("seconds_spent") if values.get("seconds_spent") is not None
               else (draft["seconds_spent"] if draft else 0.0))
    original = payload["rationale"]["text"]
    edited = values.get("edited_text") or original
    names = [d["name"] for d in rubric["dimensions"]]
    per_dim, judge, automatic = judge_hints(payload["checks"], names)
    lo, hi = rubric["scale"]
    marks = step_marks_by_number(values.get("steps"))
    return {
        **payload, "rubric": rubric, "values": values, "scores": values.get("scores") or {}, "comments": values.get("comments") or {},
        "edited_text": edited, "editing": bool(values.get("editing")) or not _same_text(edited, original),
        "seconds": int(seconds or 0), "scale": list(range(lo, hi + 1)), "judge_by_dim": per_dim,
        "judge_checks": judge, "auto_checks": automatic, "error": error,
        "error_message": i18n.translate_error(error, error.message) if error is not None else None,
        "expires_at": datetime.fromisoformat(payload["expires_at"]),
        "shown": views.step_display(payload["rationale"]), "marks": marks,
        "step_categories": views.step_taxonomy(payload["rubric"], lang),
        "severities": views.SEVERITIES, "error_step": error_step(error, values.get("steps")),
        "progress": views.reviewer_progress(conn, principal), "label": views.label, "js_messages": js_messages(),
    }


def last_review(conn, principal: Principal, item_id: str | None) -> dict[str, Any] | None:
    """The item the reviewer has just reviewed (`?done=` after a submit), with the bank's reference
    explanation where `[review] show_reference` lets them read it now that their review is in. None for an
    item they have not reviewed (the parameter is only a hint: nothing is shown on its word alone)."""
    if not item_id:
        return None
    try:
        item = views.item_row(conn, principal, item_id)
    except views.NotFound:
        return None
    if not stage.reviewed_versions(conn, item_id=item.id, reviewer_id=principal.user_id):
        return None
    allowed = views.may_see_reference(principal, views.review_config(conn, principal).show_reference, reviewed=True)
    text = item.reference_explanation if allowed and item.reference_explanation else None
    return {"item_id": item.id, "reference": text if text and text.strip() else None}


def _same_text(a: str, b: str) -> bool:
    """Texts equal but for line endings (a browser posts a textarea with CRLF) and outer whitespace."""
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def step_marks_by_number(raw: Any) -> dict[int, dict[str, Any]]:
    """The marks of a draft (or of a refused submission) by step number, to fill the form in again."""
    out: dict[int, dict[str, Any]] = {}
    for entry in raw if isinstance(raw, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("step"), int) and not isinstance(entry["step"], bool):
            out[entry["step"]] = {k: v for k, v in entry.items() if isinstance(v, str)}
    return out


def error_step(error: stage.ReviewError | None, raw: Any) -> int | None:
    """The step number a refused mark is about (`steps[0].note` -> the step of the first mark)."""
    match = STEP_ERROR_FIELD.match(error.field) if error is not None else None
    if match is None or not isinstance(raw, list) or int(match.group(1)) >= len(raw):
        return None
    entry = raw[int(match.group(1))]
    step = entry.get("step") if isinstance(entry, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


@router.get("/review")
def review_page(principal: ReviewerUser, request: Request, notice: str | None = None,
                done: str | None = None) -> HTMLResponse:
    lang = request_language(request)
    with request.app.state.web.transaction() as conn:
        last = last_review(conn, principal, done)
        lease = stage.current_lease(conn, project_id=principal.project_id, reviewer_id=principal.user_id)
        if lease is None:
            rubric = views.rubric_view(latest_rubric(conn, project_id=principal.project_id), lang)
            return page(request, "review_idle.html", {"progress": views.reviewer_progress(conn, principal),
                                                      "notice": notice_text(notice), "last": last,
                                                      "rubric": rubric})
        ctx = review_context(conn, principal, lease.assignment_id, lang=lang)
    return page(request, "review.html", {**ctx, "notice": notice_text(notice), "last": last})


@router.post("/review/next")
def review_next(principal: ReviewerUser, request: Request) -> Response:
    with request.app.state.web.transaction() as conn:
        lease = api_review.lease_next(conn, principal)
    return RedirectResponse("/review" if lease else "/review?notice=empty", status_code=303)


@router.post("/review/{assignment_id}/draft")
async def review_draft(assignment_id: str, principal: ReviewerUser, request: Request) -> HTMLResponse:
    body = form_to_body(await request.form())

    def save() -> None:
        with request.app.state.web.transaction() as conn:
            stage.save_draft(conn, project_id=principal.project_id, assignment_id=assignment_id,
                             reviewer_id=principal.user_id, body={k: v for k, v in body.items() if k != "seconds_spent"},
                             seconds_spent=body["seconds_spent"])

    try:
        await run_in_threadpool(save)
    except stage.AssignmentClosed:
        return HTMLResponse(f"<span class='warn'>{escape(_('This review is closed; the draft was not saved.'))}</span>",
                            status_code=409)
    return HTMLResponse(escape(_("Draft saved {time} UTC").format(time=now().strftime("%H:%M:%S"))))


@router.post("/review/{assignment_id}/diff")
async def review_diff(assignment_id: str, principal: ReviewerUser, request: Request) -> HTMLResponse:
    edited = (await request.form()).get("edited_text")

    def load() -> str:
        with request.app.state.web.transaction() as conn:
            return views.assignment_payload(conn, principal, assignment_id)["rationale"]["text"]

    original = await run_in_threadpool(load)
    return page(request, "_diff.html", {"old": original, "new": edited if isinstance(edited, str) else original,
                                        "old_label": _("under review"), "new_label": _("your edit")})


@router.post("/review/{assignment_id}/submit")
async def review_submit(assignment_id: str, principal: ReviewerUser, request: Request) -> Response:
    body = form_to_body(await request.form())
    web = request.app.state.web
    lang = request_language(request)

    def work() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            with web.transaction() as conn:
                result = api_review.submit(conn, principal, assignment_id, body)
                result["item_id"] = stage.get_assignment(conn, project_id=principal.project_id,
                                                         assignment_id=assignment_id,
                                                         reviewer_id=principal.user_id).item_id
        except stage.ReviewError as exc:
            with web.transaction() as conn:  # keep what was typed, then show the form again with the problem
                stage.save_draft(conn, project_id=principal.project_id, assignment_id=assignment_id,
                                 reviewer_id=principal.user_id, body={**body, "editing": body["verdict"] == "edit"},
                                 seconds_spent=body["seconds_spent"])
                return None, review_context(conn, principal, assignment_id, lang=lang, values=body, error=exc)
        with web.transaction() as conn:
            api_review.lease_next(conn, principal)
        return result, None

    result, error_ctx = await run_in_threadpool(work)
    if error_ctx is not None:
        return page(request, "review.html", error_ctx, status_code=422)
    notice = "edited" if result and result["new_rationale_id"] else "submitted"
    done = quote(str(result["item_id"]), safe="") if result and result.get("item_id") else ""
    return RedirectResponse(f"/review?notice={notice}" + (f"&done={done}" if done else ""), status_code=303)


@router.post("/review/{assignment_id}/release")
def review_release(assignment_id: str, principal: ReviewerUser, request: Request) -> Response:
    with request.app.state.web.transaction() as conn:
        stage.release_assignment(conn, project_id=principal.project_id, assignment_id=assignment_id,
                                 reviewer_id=principal.user_id)
    return RedirectResponse("/review?notice=released", status_code=303)
