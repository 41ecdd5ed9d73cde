"""Item history (every version with its diff and its step changes, every review and step mark you may see,
every check and event), the progress dashboard and the list of escalated items."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clinreason.stages.review import GENERAL_COMMENT
from clinreason.store.projects import latest_rubric
from clinreason.store.readmodels import status_counts
from clinreason.web import views
from clinreason.web.auth import AnyUser, SeniorUser
from clinreason.web.deps import page, request_language
from clinreason.web.i18n import _

router = APIRouter(include_in_schema=False)


def _numbers(steps: list[int]) -> str:
    return ", ".join(str(n) for n in steps)


def step_changes_text(entry: dict[str, Any] | None) -> str | None:
    """"Steps since v1: 1 changed (2), 1 added (3), 0 removed" for a version's step history entry, in the
    current language; None for a version with no parent to compare with."""
    changes = entry.get("changes") if entry else None
    if not entry or not changes:
        return None
    parent = entry["parent_version"]
    changed, added, removed = changes["changed"], changes["added"], changes["removed"]
    if not (changed or added or removed):
        return _("Steps since v{version}: none changed").format(version=parent)
    return _("Steps since v{version}: {changed} changed{changed_steps}, {added} added{added_steps}, "
             "{removed} removed{removed_steps}").format(
        version=parent, changed=len(changed), added=len(added), removed=len(removed),
        changed_steps=f" ({_numbers(changed)})" if changed else "",
        added_steps=f" ({_numbers(added)})" if added else "",
        removed_steps=" " + _("(v{version} step {steps})").format(version=parent, steps=_numbers(removed))
        if removed else "")


@router.get("/items/{item_id}")
def item_page(item_id: str, principal: AnyUser, request: Request) -> HTMLResponse:
    lang = request_language(request)
    with request.app.state.web.transaction() as conn:
        history = views.item_history(conn, principal, item_id)
        rubric = views.rubric_view(latest_rubric(conn, project_id=principal.project_id), lang)
    # scores and comments are keyed by dimension: the page names each by its title in the reader's language
    titles = {d["name"]: d["title"] for d in rubric["dimensions"]}
    titles[GENERAL_COMMENT] = _("General comment")
    versions = history["versions"]
    by_version = {v["version"]: v for v in versions}
    steps_of = {entry["rationale_id"]: entry for entry in history["step_history"]}
    cards = []
    for v in reversed(versions):
        parent = by_version.get(v["parent_version"]) if v["parent_version"] is not None else by_version.get(v["version"] - 1)
        cards.append({
            "rationale": v, "parent": parent,
            "checks": [c for c in history["checks"] if c["rationale_id"] == v["id"]],
            "reviews": [r for r in history["reviews"] if r["rationale_id"] == v["id"]],
            "steps": steps_of.get(v["id"]), "shown": views.step_display(v),
            "step_changes": step_changes_text(steps_of.get(v["id"])),
        })
    return page(request, "item.html", {"item": history, "cards": cards, "titles": titles, "label": views.label})


@router.get("/dashboard")
def dashboard(principal: AnyUser, request: Request) -> HTMLResponse:
    scan = None
    if principal.role in ("admin", "adjudicator"):  # the kept review scan, brought up to date and stored first
        from clinreason.analytics.kept import refresh

        scan = refresh(request.app.state.web.engine, project_id=principal.project_id)
    with request.app.state.web.transaction() as conn:
        counts = status_counts(conn, project_id=principal.project_id)
        leases = views.open_leases(conn, principal)
        mine = views.reviewer_progress(conn, principal)
        evidence = None
        if principal.role in ("admin", "adjudicator"):  # agreement and reviewer tables are not for reviewers
            from clinreason.analytics.charts import dashboard_context

            evidence = dashboard_context(conn, principal.project_id, translate=_,
                                         language=request_language(request), scan=scan)
    if evidence is not None:  # the reliability fit it made, for the other workers and the next process
        from clinreason.analytics.reliability import keep_fit

        keep_fit(request.app.state.web.engine, principal.project_id)
    return page(request, "dashboard.html", {"counts": counts, "open_leases": leases, "mine": mine,
                                            "evidence": evidence, "label": views.label})


@router.get("/adjudicate")
def adjudicate(principal: SeniorUser, request: Request) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        escalated = views.escalated_items(conn, principal)
    return page(request, "adjudicate.html", {"items": escalated})
