"""Reading: an item's whole history, project status, the rubric, the adjudication list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from clinreason.store.projects import latest_rubric
from clinreason.store.readmodels import status_counts
from clinreason.web import views
from clinreason.web.auth import AnyUser, SeniorUser
from clinreason.web.schemas import ItemHistoryOut

router = APIRouter(prefix="/api", tags=["items"])


@router.get("/items/{item_id}", response_model=None,
            responses={200: {"model": ItemHistoryOut, "description": "the item's history, as you may see it"}})
def get_item(item_id: str, principal: AnyUser, request: Request) -> dict[str, Any]:
    """The item with every version, check and event, and the reviews you may see (blind review: a reviewer
    sees others' reviews of a version only after submitting their own). The bank's `reference_explanation`
    is there for adjudicators and admins, and for a reviewer as `[review] show_reference` allows (`always`;
    `after_submit`: once they have reviewed the item; `never`: not at all)."""
    with request.app.state.web.transaction() as conn:
        return views.item_history(conn, principal, item_id)


@router.get("/status")
def project_status(principal: AnyUser, request: Request) -> dict[str, Any]:
    """The same JSON as `clinreason status --json`."""
    with request.app.state.web.transaction() as conn:
        return status_counts(conn, project_id=principal.project_id)


@router.get("/rubric")
def current_rubric(principal: AnyUser, request: Request) -> dict[str, Any]:
    """The project's current rubric (dimensions, anchors, thresholds, version)."""
    with request.app.state.web.transaction() as conn:
        return latest_rubric(conn, project_id=principal.project_id)


@router.get("/adjudication")
def escalated_items(principal: SeniorUser, request: Request) -> dict[str, Any]:
    """Escalated items waiting for an adjudicator."""
    with request.app.state.web.transaction() as conn:
        return {"items": views.escalated_items(conn, principal)}
