"""The privacy gate over JSON (admins only): the held items, one item's text cut into plain and found pieces
(for a page that highlights the spans), and the three actions — release, edit, exclude — each with a
reason, recorded with the admin's name. The work is in stages/privacy.py.

Not registered yet: web/app.py `route_modules()` adds `api_privacy` to serve it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from clinreason.stages import privacy as stage
from clinreason.stages.review import ReviewError
from clinreason.store.common import NotFoundError, StaleStateError
from clinreason.web.auth import AdminUser

router = APIRouter(tags=["privacy"])
PREFIX = "/api/admin/privacy"


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2_000, description="why (recorded with your name)")


class EditBody(ReasonBody):
    question: str | None = Field(None, max_length=100_000)
    options: dict[str, str] | None = Field(None, description="label -> new text; labels not given keep their text")
    answer_text: str | None = Field(None, max_length=100_000)
    context: str | None = Field(None, max_length=500_000)
    reference_explanation: str | None = Field(None, max_length=500_000)
    redact: bool = Field(False, description="replace every finding in the item's own text by [TYPE]")


def _translate(exc: stage.PrivacyError, field: str = "reason") -> Exception:
    """A stage refusal as the app answers it: 404 for another project's or no item, 409 for an item that is
    not (or no longer) held, 422 with the field named for a bad body."""
    message = str(exc)
    if message.startswith("no item"):
        return NotFoundError(message)
    if "not held" in message or "resolved by someone else" in message or "no open hold" in message:
        return StaleStateError(message)
    if "reason" in message:
        return ReviewError("reason", message)
    if "option" in message:
        return ReviewError("options", message)
    return ReviewError(field, message)


def _plain(view: dict[str, Any]) -> dict[str, Any]:
    item = view["item"]
    return {"item": {"id": item.id, "state": item.state, "language": item.language}, "hold": view["hold"],
            "segments": view["segments"], "elsewhere": view["elsewhere"], "records": view["records"],
            "revisions": view["revisions"]}


@router.get(PREFIX)
def list_held(principal: AdminUser, request: Request) -> dict[str, Any]:
    """Every item the gate holds: the request held, where it was to go, and what was found (type, span,
    score, a masked preview; never the identifier itself)."""
    with request.app.state.web.transaction() as conn:
        return {"held": stage.held_items(conn, project_id=principal.project_id)}


@router.get(PREFIX + "/{item_id}", responses={404: {"description": "no such item in your project"}})
def held_item(item_id: str, principal: AdminUser, request: Request) -> dict[str, Any]:
    """The item's segments cut into pieces (`{"text"}` or `{"text", "finding"}` where the open hold found
    something), its holds and flags, and its earlier contents."""
    with request.app.state.web.transaction() as conn:
        try:
            return _plain(stage.hold_view(conn, project_id=principal.project_id, item_id=item_id))
        except stage.PrivacyError as exc:
            raise _translate(exc) from None


@router.post(PREFIX + "/{item_id}/release", responses={404: {"description": "no such item"},
                                                       409: {"description": "the item is not held"}})
def release(item_id: str, body: ReasonBody, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Let a held item through: its request goes out at the next run; what was found is not held again."""
    with request.app.state.web.transaction() as conn:
        try:
            return stage.release(conn, project_id=principal.project_id, item_id=item_id, actor=principal.actor,
                                 reason=body.reason)
        except stage.PrivacyError as exc:
            raise _translate(exc) from None


@router.post(PREFIX + "/{item_id}/edit", responses={404: {"description": "no such item"},
                                                    409: {"description": "the item is not held"},
                                                    422: {"description": "invalid body; the field is named"}})
def edit(item_id: str, body: EditBody, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Rewrite a held item's text (the old content is kept as a revision); it is scanned again before its
    request goes out."""
    changes = {k: v for k, v in body.model_dump(exclude={"reason", "redact"}).items() if v is not None}
    with request.app.state.web.transaction() as conn:
        try:
            return stage.edit(conn, project_id=principal.project_id, item_id=item_id, actor=principal.actor,
                              reason=body.reason, changes=changes, redact=body.redact)
        except stage.PrivacyError as exc:
            raise _translate(exc, field="question") from None


@router.post(PREFIX + "/{item_id}/exclude", responses={404: {"description": "no such item"},
                                                       409: {"description": "the item is not held"}})
def exclude(item_id: str, body: ReasonBody, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Exclude a held item from the dataset (final; a decision with the reason)."""
    with request.app.state.web.transaction() as conn:
        try:
            return stage.exclude(conn, project_id=principal.project_id, item_id=item_id, actor=principal.actor,
                                 reason=body.reason)
        except stage.PrivacyError as exc:
            raise _translate(exc) from None
