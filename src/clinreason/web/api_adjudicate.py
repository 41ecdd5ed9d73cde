"""Adjudication over JSON and from the item page: accept a version, write the final text, or exclude.
Adjudicators and admins only; the decision is final. Two adjudicators at once: the first wins, the
second gets 409 naming who decided."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from clinreason.stages import adjudicate as stage
from clinreason.stages.review import ReviewError
from clinreason.store.common import NotFoundError, StaleStateError
from clinreason.store.decisions import get_decision
from clinreason.store.items import get_item
from clinreason.web.auth import Principal, SeniorUser
from clinreason.web.i18n import N_
from clinreason.web.schemas import GIVEN_TEXT, errors, when
from clinreason.web.views import form_body

router = APIRouter(tags=["adjudication"])


class AdjudicationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"allOf": [
        when("action", "accept", {"required": ["rationale_id"], "properties": {"rationale_id": {"minLength": 1}}}),
        when("action", "write", {"required": ["text"], "properties": {"text": GIVEN_TEXT}}),
        when("action", "exclude", {"required": ["reason"], "properties": {"reason": GIVEN_TEXT}})]})

    action: Literal["accept", "write", "exclude"] = Field(
        description="accept: one version becomes final; write: your text becomes a new, final version; "
                    "exclude: the item leaves the dataset")
    rationale_id: str | None = Field(None, max_length=100, description="with accept (required): the version to accept")
    text: str | None = Field(None, max_length=200_000, description="with write (required): the final rationale")
    reason: str | None = Field(None, max_length=5_000, description="why (required with exclude)")


def decide(conn: Connection, principal: Principal, item_id: str, body: AdjudicationBody) -> dict[str, Any]:
    if get_item(conn, project_id=principal.project_id, item_id=item_id) is None:
        raise NotFoundError(N_("no item {item_id} in this project"), {"item_id": item_id})
    who, pid, reason = principal.username, principal.project_id, (body.reason or "").strip()
    try:
        if body.action == "accept":
            if not body.rationale_id:
                raise ReviewError("rationale_id", N_("required with action 'accept': the version to accept"))
            stage.accept_version(conn, project_id=pid, item_id=item_id, rationale_id=body.rationale_id,
                                 adjudicator=who, reason=reason)
        elif body.action == "write":
            if not body.text or not body.text.strip():
                raise ReviewError("text", N_("required with action 'write': the final rationale"))
            stage.write_final(conn, project_id=pid, item_id=item_id, text=body.text, adjudicator=who, reason=reason)
        else:
            if not reason:
                raise ReviewError("reason", N_("required with action 'exclude' (e.g. flawed question, wrong gold answer)"))
            stage.exclude(conn, project_id=pid, item_id=item_id, reason=reason, adjudicator=who)
    except stage.AdjudicationError as exc:
        if "not a version" in str(exc):
            raise ReviewError("rationale_id", exc.template, exc.params) from None
        raise StaleStateError(exc.template, exc.params) from None
    item = get_item(conn, project_id=pid, item_id=item_id)
    decision = get_decision(conn, item_id=item_id)
    if item is None or decision is None:
        raise StaleStateError(N_("item {item_id} has no decision after adjudication"), {"item_id": item_id})
    return {"item_id": item_id, "state": item.state,
            "decision": {"kind": decision.kind, "rationale_id": decision.rationale_id,
                         "decided_by": decision.decided_by, "reason": decision.reason}}


@router.post("/api/items/{item_id}/adjudication",
             responses=errors(_404="no such item in your project",
                              _409="not escalated, or another adjudicator decided first",
                              _422="invalid body; the field is named"))
def adjudicate_item(item_id: str, body: AdjudicationBody, principal: SeniorUser, request: Request) -> dict[str, Any]:
    """Settle an escalated item (final)."""
    with request.app.state.web.transaction() as conn:
        return decide(conn, principal, item_id, body)


@router.post("/items/{item_id}/adjudicate", include_in_schema=False)
async def adjudicate_form(item_id: str, principal: SeniorUser, request: Request) -> Response:
    form = await request.form()
    body = form_body(AdjudicationBody, action=str(form.get("action", "")), rationale_id=form.get("rationale_id") or None,
                     text=form.get("text") or None, reason=form.get("reason") or None)

    def work() -> None:
        with request.app.state.web.transaction() as conn:
            decide(conn, principal, item_id, body)

    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(work)
    return RedirectResponse(f"/items/{item_id}", status_code=303)
