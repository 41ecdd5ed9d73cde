"""The privacy gate's admin pages: the held items, and one item with what was found highlighted in its
text, with the three actions (release, redact and send, exclude), each with a reason recorded with the
admin's name. The work is in stages/privacy.py; api_privacy.py is the same over JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from clinreason.stages import privacy as stage
from clinreason.web import i18n, views
from clinreason.web.api_privacy import _translate
from clinreason.web.auth import AdminUser
from clinreason.web.deps import page
from clinreason.web.i18n import N_, _

router = APIRouter(prefix="/admin/privacy", include_in_schema=False)
ACTIONS = ("release", "redact", "exclude")
SEGMENTS = {"question": N_("question stem"), "answer": N_("answer text"), "context": N_("context"),
            "reference explanation": N_("reference explanation"), "previous rationale": N_("previous rationale")}


def segment_label(name: str) -> str:
    """A part of an item's text, named in the page's language (`option A` keeps its label)."""
    if name.startswith("option "):
        return _("option %(label)s") % {"label": name.removeprefix("option ")}
    return _(SEGMENTS[name]) if name in SEGMENTS else name


@router.get("")
def held_page(principal: AdminUser, request: Request) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        held = stage.held_items(conn, project_id=principal.project_id)
    return page(request, "admin_privacy.html", {"held": held})


def _item_page(request: Request, principal: AdminUser, item_id: str, *, error: str | None = None,
               status_code: int = 200, reason: str = "") -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        try:
            view = stage.hold_view(conn, project_id=principal.project_id, item_id=item_id)
        except stage.PrivacyError as exc:
            raise _translate(exc) from None
    state = views.LABELS["state"].get(view["item"].state, view["item"].state)
    return page(request, "admin_privacy_item.html", {"view": view, "error": error, "reason": reason,
                                                     "state_label": _(state), "segment_label": segment_label},
                status_code=status_code)


@router.get("/{item_id}")
def held_item_page(item_id: str, principal: AdminUser, request: Request) -> HTMLResponse:
    return _item_page(request, principal, item_id)


@router.post("/{item_id}/{action}")
async def act(item_id: str, action: str, principal: AdminUser, request: Request) -> Response:
    form = await request.form()
    reason = str(form.get("reason", ""))
    if action not in ACTIONS:
        return _item_page(request, principal, item_id, error=f"unknown action {action!r}", status_code=404)

    def work() -> None:
        pid, actor = principal.project_id, principal.actor
        with request.app.state.web.transaction() as conn:
            if action == "release":
                stage.release(conn, project_id=pid, item_id=item_id, actor=actor, reason=reason)
            elif action == "exclude":
                stage.exclude(conn, project_id=pid, item_id=item_id, actor=actor, reason=reason)
            else:
                stage.edit(conn, project_id=pid, item_id=item_id, actor=actor, reason=reason, changes={}, redact=True)

    try:
        await run_in_threadpool(work)
    except stage.PrivacyError as exc:
        return _item_page(request, principal, item_id, error=i18n.translate_error(_translate(exc)), status_code=422, reason=reason)
    return RedirectResponse("/admin/privacy", status_code=303)
