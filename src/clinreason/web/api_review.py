"""The review queue over JSON: next item, the assignment, its autosaved draft, submitting, giving back."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from clinreason.config import ReviewConfig
from clinreason.stages import review as stage
from clinreason.store.projects import latest_rubric
from clinreason.web import views
from clinreason.web.auth import Principal, ReviewerUser

router = APIRouter(prefix="/api", tags=["review"])


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["accept", "edit", "regenerate", "flag_question"]
    scores: dict[str, Any] = Field(description="every rubric dimension -> an integer on the rubric's scale")
    comments: dict[str, str | None] = Field(default_factory=dict,
                                            description="dimension name (or 'general') -> comment")
    edited_text: str | None = Field(None, description="the full corrected rationale; required with verdict 'edit'")
    seconds_spent: float | None = Field(None, ge=0, description="defaults to the autosaved timer or the lease age")
    steps: list[dict[str, Any]] | None = Field(
        None, description="marks on the version's steps, numbered 1… as displayed: "
                          '[{"step": 3, "verdict": "error", "category": "unsafe", "severity": "critical", '
                          '"note": "…", "correction": "…"}, {"step": 1, "verdict": "ok"}]; `category` (from the '
                          "rubric's step_errors), `severity` (minor|major|critical) and `note` are required with "
                          "'error'. A bad mark is a 422 naming it, e.g. `steps[0].step`")


class ReviewOut(BaseModel):
    review_id: str
    rationale_id: str
    new_rationale_id: str | None = None
    new_version: int | None = None


class DraftBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: str | None = None
    scores: dict[str, int | None] = Field(default_factory=dict)
    comments: dict[str, str | None] = Field(default_factory=dict)
    edited_text: str | None = Field(None, max_length=stage.MAX_TEXT_CHARS)
    seconds_spent: float | None = Field(None, ge=0)
    steps: list[dict[str, Any]] = Field(default_factory=list, max_length=500,
                                        description="step marks so far (not validated until submitted)")


def lease_next(conn: Connection, principal: Principal) -> stage.Lease | None:
    project = views.project_row(conn, principal)
    cfg = ReviewConfig.from_stored(project["config"])
    reviewer = stage.Reviewer(principal.user_id, principal.username, principal.specialties)
    return stage.assign_next_review(conn, project_id=principal.project_id, reviewer=reviewer,
                                    overlap=cfg.policy().base_overlap, lease_minutes=cfg.lease_minutes)


def submit(conn: Connection, principal: Principal, assignment_id: str, body: dict[str, Any]) -> dict[str, Any]:
    project = views.project_row(conn, principal)
    reviewer = stage.Reviewer(principal.user_id, principal.username, principal.specialties)
    return stage.submit_review(conn, project_id=principal.project_id, assignment_id=assignment_id, reviewer=reviewer,
                               body=body, rubric_body=latest_rubric(conn, project_id=principal.project_id),
                               overlap=ReviewConfig.from_stored(project["config"]).policy().base_overlap)


@router.get("/queue/next", responses={204: {"description": "nothing to review for you right now"}})
def queue_next(principal: ReviewerUser, request: Request) -> Any:
    """Lease the next rationale version to review (or get back the one you already hold): the item (with its
    `sources`, and its `reference_explanation` only where `[review] show_reference` lets you see it now), the
    version (with the model's `reasoning` trace, if any), its checks, the rubric and your draft."""
    with request.app.state.web.transaction() as conn:
        lease = lease_next(conn, principal)
        if lease is None:
            return Response(status_code=204)
        return views.assignment_payload(conn, principal, lease.assignment_id)


@router.get("/assignments/{assignment_id}")
def get_assignment(assignment_id: str, principal: ReviewerUser, request: Request) -> dict[str, Any]:
    """One of your assignments, with the item, the version, its checks, the rubric and your draft (as
    GET /api/queue/next; with `show_reference = "after_submit"` the item's `reference_explanation` is there once
    this review is submitted)."""
    with request.app.state.web.transaction() as conn:
        return views.assignment_payload(conn, principal, assignment_id)


@router.put("/assignments/{assignment_id}/draft", status_code=204)
def save_draft(assignment_id: str, body: DraftBody, principal: ReviewerUser, request: Request) -> Response:
    """Autosave what you have so far (nothing is lost when the tab closes)."""
    with request.app.state.web.transaction() as conn:
        stage.save_draft(conn, project_id=principal.project_id, assignment_id=assignment_id,
                         reviewer_id=principal.user_id, body=body.model_dump(exclude={"seconds_spent"}),
                         seconds_spent=body.seconds_spent)
    return Response(status_code=204)


@router.post("/assignments/{assignment_id}/release", status_code=204)
def release(assignment_id: str, principal: ReviewerUser, request: Request) -> Response:
    """Give the lease back (skip this item); you will not be offered this version again."""
    with request.app.state.web.transaction() as conn:
        stage.release_assignment(conn, project_id=principal.project_id, assignment_id=assignment_id,
                                 reviewer_id=principal.user_id)
    return Response(status_code=204)


@router.post("/assignments/{assignment_id}/review", status_code=201, response_model=ReviewOut,
             responses={409: {"description": "already submitted, given back, or the lease was lost"},
                        422: {"description": "invalid body; `detail[0].loc` names the field"}})
def post_review(assignment_id: str, body: ReviewBody, principal: ReviewerUser, request: Request) -> ReviewOut:
    """Submit your review of the leased version. Reviews are immutable; `edit` stores a new version."""
    with request.app.state.web.transaction() as conn:
        return ReviewOut(**submit(conn, principal, assignment_id, body.model_dump()))
