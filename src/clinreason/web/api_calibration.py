"""Calibration items over JSON and from the item page (admins only): mark a version of known truth,
list them with each reviewer's results, withdraw one. Reviewers never see any of this: to them a calibration version is
leased and submitted like any other."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from clinreason.stages import calibration as stage
from clinreason.stages.review import ReviewError
from clinreason.store.common import NotFoundError, StaleStateError
from clinreason.store.items import get_item
from clinreason.web.auth import AdminUser, Principal
from clinreason.web.i18n import N_
from clinreason.web.schemas import errors
from clinreason.web.views import form_body

router = APIRouter(tags=["calibration"])
PREFIX = "/api/admin/calibration"


class CalibrationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: str = Field(min_length=1, max_length=40)
    expect: Literal["good", "bad"] = Field(description="the known truth about the version")
    version: int | None = Field(None, ge=1, description="the version (default: the latest)")
    note: str = Field("", max_length=5_000, description="e.g. which error was seeded")
    seeded_text: str | None = Field(None, max_length=200_000,
                                    description="store this text as a new version first (e.g. with a seeded error)")


def _apply(conn: Connection, principal: Principal, body: CalibrationBody) -> dict[str, Any]:
    if get_item(conn, project_id=principal.project_id, item_id=body.item_id) is None:
        raise NotFoundError(N_("no item {item_id} in this project"), {"item_id": body.item_id})
    try:
        return stage.mark(conn, project_id=principal.project_id, item_id=body.item_id, expect=body.expect,
                          actor=principal.actor, version=body.version, note=body.note, seeded_text=body.seeded_text)
    except stage.CalibrationError as exc:
        if exc.field is not None:
            raise ReviewError(exc.field, exc.template, exc.params) from None
        raise StaleStateError(exc.template, exc.params) from None


@router.get(PREFIX)
def list_calibration(principal: AdminUser, request: Request) -> dict[str, Any]:
    """Calibration items and every reviewer's calibration results."""
    with request.app.state.web.transaction() as conn:
        return {"items": stage.listing(conn, project_id=principal.project_id),
                "reviewers": stage.results(conn, project_id=principal.project_id)}


@router.post(PREFIX, status_code=201, responses=errors(_404="no such item in your project",
                                                      _409="the item is accepted, excluded or already one",
                                                      _422="invalid body; the field is named"))
def mark_calibration(body: CalibrationBody, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Make an item a calibration item (its version of known truth is served to reviewers)."""
    with request.app.state.web.transaction() as conn:
        return _apply(conn, principal, body)


@router.delete(PREFIX + "/{item_id}", responses=errors(_404="not a calibration item of your project"))
def withdraw_calibration(item_id: str, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Withdraw a calibration item: it returns to review as any other item."""
    with request.app.state.web.transaction() as conn:
        try:
            stage.unmark(conn, project_id=principal.project_id, item_id=item_id, actor=principal.actor)
        except stage.CalibrationError as exc:
            raise NotFoundError(exc.template, exc.params) from None
    return {"item_id": item_id, "state": "in_review"}


@router.post("/items/{item_id}/calibration", include_in_schema=False)
async def mark_form(item_id: str, principal: AdminUser, request: Request) -> Response:
    form = await request.form()
    version = str(form.get("version") or "").strip()
    seeded = str(form.get("seeded_text") or "")
    body = form_body(CalibrationBody, item_id=item_id, expect=str(form.get("expect", "")),
                     version=int(version) if version.isdigit() else None, note=str(form.get("note") or ""),
                     seeded_text=seeded if seeded.strip() else None)

    def work() -> None:
        with request.app.state.web.transaction() as conn:
            _apply(conn, principal, body)

    await run_in_threadpool(work)
    return RedirectResponse(f"/items/{item_id}", status_code=303)


@router.post("/items/{item_id}/calibration/withdraw", include_in_schema=False)
def withdraw_form(item_id: str, principal: AdminUser, request: Request) -> Response:
    withdraw_calibration(item_id, principal, request)
    return RedirectResponse(f"/items/{item_id}", status_code=303)
