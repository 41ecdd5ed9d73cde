"""The review queue over JSON: next item, the assignment, its autosaved draft, submitting, giving back."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from clinreason.domain.steps import MAX_CORRECTION_CHARS, MAX_NOTE_CHARS
from clinreason.stages import review as stage
from clinreason.stages.settings import ReviewSettings, review_settings
from clinreason.store import db as store_db
from clinreason.store.common import NotFoundError
from clinreason.web import views
from clinreason.web.auth import Principal, ReviewerUser
from clinreason.web.schemas import GIVEN_TEXT, AssignmentOut, errors, when

router = APIRouter(prefix="/api", tags=["review"])


class StepMark(BaseModel):
    """A mark on one step of the version under review (numbered 1… as displayed)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"allOf": [
        when("verdict", "error", {"required": ["category", "severity", "note"], "properties": {
            "category": {"type": "string", "minLength": 1}, "severity": {"type": "string"}, "note": GIVEN_TEXT}}),
        when("verdict", "ok", {"properties": {"category": {"enum": [None, ""]}, "severity": {"enum": [None]},
                                              "note": {"enum": [None, ""]}, "correction": {"enum": [None, ""]}}})]})

    step: int = Field(ge=1, description="the step's number, 1… up to the version's number of steps")
    verdict: Literal["ok", "error"]
    category: str | None = Field(None, max_length=100, description=(
        "with 'error' (required): one of the project's step error categories (GET /api/rubric: the keys of "
        "`step_errors`; the default taxonomy: unsafe, factual, reasoning, guideline, omission, …); empty or "
        "absent with 'ok'"))
    severity: Literal["minor", "major", "critical"] | None = Field(
        None, description="with 'error' (required): minor < major < critical; absent with 'ok'")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS,
                             description="with 'error' (required, not blank): what is wrong with the step")
    correction: str | None = Field(None, max_length=MAX_CORRECTION_CHARS,
                                   description="with 'error' (optional): the corrected step")


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "allOf": [when("verdict", "edit", {"required": ["edited_text"], "properties": {"edited_text": GIVEN_TEXT}})],
        "examples": [{"verdict": "accept", "scores": {"correctness": 5, "reasoning": 4, "sufficiency": 4,
                                                       "terminology": 5, "clinical_value": 4},
                      "comments": {"general": "Sound; the distractors are ruled out."},
                      "steps": [{"step": 1, "verdict": "ok"}]}]})

    verdict: Literal["accept", "edit", "regenerate", "flag_question"]
    scores: dict[str, int] = Field(description=(
        "every dimension of your project's rubric -> an integer on the rubric's scale; the dimensions and the "
        "scale are the project's (GET /api/rubric: `dimensions[].name`, `scale`; the default rubric: "
        "correctness, reasoning, sufficiency, terminology, clinical_value, each 1-5). A missing, unknown or "
        "out-of-scale score is a 422 naming it, e.g. `scores.correctness`"))
    comments: dict[str, str | None] = Field(default_factory=dict, description=(
        f"a rubric dimension (or '{stage.GENERAL_COMMENT}') -> your comment, at most {stage.MAX_COMMENT_CHARS} "
        "characters; any other key is a 422 naming it"))
    edited_text: str | None = Field(None, max_length=stage.MAX_TEXT_CHARS, description=(
        "the full corrected rationale: required with verdict 'edit' (and different from the version), "
        "refused with any other verdict unless it is the version's text unchanged"))
    seconds_spent: float | None = Field(None, ge=0, allow_inf_nan=False,
                                        description="defaults to the autosaved timer or the lease age")
    steps: list[StepMark] | None = Field(None, max_length=500, description=(
        "marks on the version's steps: at most one per step; a step beyond the version's last, or an unknown "
        "category, is a 422 naming the mark, e.g. `steps[0].step`"))


class ReviewOut(BaseModel):
    review_id: str
    rationale_id: str
    new_rationale_id: str | None = None
    new_version: int | None = None


class DraftBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    verdict: Literal["accept", "edit", "regenerate", "flag_question"] | None = None
    scores: dict[str, int | None] = Field(default_factory=dict, description="not checked until submitted")
    comments: dict[str, str | None] = Field(default_factory=dict)
    edited_text: str | None = Field(None, max_length=stage.MAX_TEXT_CHARS)
    seconds_spent: float | None = Field(None, ge=0, allow_inf_nan=False)
    steps: list[dict[str, Any]] = Field(default_factory=list, max_length=500,
                                        description="step marks so far (not checked until submitted)")


def _settings(conn: Connection, principal: Principal) -> ReviewSettings:
    """The project's review settings and current rubric (one statement, parsed once per stored text)."""
    try:
        return review_settings(conn, principal.project_id)
    except NotFoundError:
        views.project_row(conn, principal)  # the project is gone: its own 404
        raise


def lease_next(conn: Connection, principal: Principal) -> stage.Lease | None:
    current = _settings(conn, principal)
    reviewer = stage.Reviewer(principal.user_id, principal.username, principal.specialties)
    return stage.assign_next_review(conn, project_id=principal.project_id, reviewer=reviewer,
                                    overlap=current.policy.base_overlap, lease_minutes=current.config.lease_minutes,
                                    settings=current)


def submit(conn: Connection, principal: Principal, assignment_id: str, body: dict[str, Any]) -> dict[str, Any]:
    current = _settings(conn, principal)
    reviewer = stage.Reviewer(principal.user_id, principal.username, principal.specialties)
    return stage.submit_review(conn, project_id=principal.project_id, assignment_id=assignment_id, reviewer=reviewer,
                               body=body, rubric_body=current.rubric, overlap=current.policy.base_overlap,
                               settings=current)


NOT_YOURS = "another reviewer's assignment (or you are not a reviewer)"

_PLAIN = (str, int, float, bool, type(None))


def _plain_json(value: Any) -> bool:
    """Whether FastAPI's jsonable_encoder would hand `value` back unchanged: only dicts with str keys (none
    starting with '_sa', which it drops), lists and JSON scalars."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and not k.startswith("_sa") and _plain_json(v) for k, v in value.items())
    if kind is list:
        return all(_plain_json(v) for v in value)
    return kind in _PLAIN


def _json_answer(payload: dict[str, Any]) -> JSONResponse:
    """The JSON response FastAPI would build for `payload` (the same bytes), without its encoder's walk
    over an already plain payload (a few hundred values per assignment: a millisecond a request)."""
    return JSONResponse(payload if _plain_json(payload) else jsonable_encoder(payload))


@router.get("/queue/next", response_model=None,
            responses={200: {"model": AssignmentOut, "description": "your assignment"},
                       204: {"description": "nothing to review for you right now"}})
def queue_next(principal: ReviewerUser, request: Request) -> Any:
    """Lease the next rationale version to review (or get back the one you already hold): the item (with its
    `sources`, and its `reference_explanation` only where `[review] show_reference` lets you see it now), the
    version (with the model's `reasoning` trace, if any), its checks, the rubric and your draft."""
    web = request.app.state.web
    with web.transaction() as conn:
        lease = lease_next(conn, principal)
    if lease is None:
        return Response(status_code=204)
    # the payload only reads: built after the lease is committed, outside the write turn (SQLite has one
    # writer at a time; the other web processes go on writing meanwhile)
    with store_db.reading(web.engine) as conn:
        return _json_answer(views.assignment_payload(conn, principal, lease.assignment_id))


@router.get("/assignments/{assignment_id}", response_model=None,
            responses={200: {"model": AssignmentOut, "description": "the assignment"}, **errors(_403=NOT_YOURS)})
def get_assignment(assignment_id: str, principal: ReviewerUser, request: Request) -> Response:
    """One of your assignments, with the item, the version, its checks, the rubric and your draft (as
    GET /api/queue/next; with `show_reference = "after_submit"` the item's `reference_explanation` is there once
    this review is submitted)."""
    with store_db.reading(request.app.state.web.engine) as conn:
        return _json_answer(views.assignment_payload(conn, principal, assignment_id))


@router.put("/assignments/{assignment_id}/draft", status_code=204,
            responses=errors(_403=NOT_YOURS, _409="the assignment is submitted, given back, or its lease was lost"))
def save_draft(assignment_id: str, body: DraftBody, principal: ReviewerUser, request: Request) -> Response:
    """Autosave what you have so far (nothing is lost when the tab closes)."""
    with request.app.state.web.transaction() as conn:
        stage.save_draft(conn, project_id=principal.project_id, assignment_id=assignment_id,
                         reviewer_id=principal.user_id, body=body.model_dump(exclude={"seconds_spent"}),
                         seconds_spent=body.seconds_spent)
    return Response(status_code=204)


@router.post("/assignments/{assignment_id}/release", status_code=204,
             responses=errors(_403=NOT_YOURS, _409="the assignment is submitted already"))
def release_assignment(assignment_id: str, principal: ReviewerUser, request: Request) -> Response:
    """Give the lease back (skip this item); you will not be offered this version again."""
    with request.app.state.web.transaction() as conn:
        stage.release_assignment(conn, project_id=principal.project_id, assignment_id=assignment_id,
                                 reviewer_id=principal.user_id)
    return Response(status_code=204)


@router.post("/assignments/{assignment_id}/review", status_code=201, response_model=ReviewOut,
             responses=errors(_403=NOT_YOURS, _409="already submitted, given back, or the lease was lost",
                              _422="invalid body; `detail[0].loc` names the field"))
def submit_review(assignment_id: str, body: ReviewBody, principal: ReviewerUser, request: Request) -> ReviewOut:
    """Submit your review of the leased version. Reviews are immutable; `edit` stores a new version."""
    given = body.model_dump(exclude_unset=True)
    with request.app.state.web.transaction() as conn:
        return ReviewOut(**submit(conn, principal, assignment_id, given))
