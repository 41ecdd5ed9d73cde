"""Item history (every version with its diff and its step changes, every review and step mark you may see,
every check and event), the progress dashboard and the list of escalated items."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clinreason.store.readmodels import status_counts
from clinreason.web import views
from clinreason.web.auth import AnyUser, SeniorUser
from clinreason.web.deps import page

router = APIRouter(include_in_schema=False)


@router.get("/items/{item_id}")
def item_page(item_id: str, principal: AnyUser, request: Request) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        history = views.item_history(conn, principal, item_id)
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
        })
    return page(request, "item.html", {"item": history, "cards": cards})


@router.get("/dashboard")
def dashboard(principal: AnyUser, request: Request) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        counts = status_counts(conn, project_id=principal.project_id)
        leases = views.open_leases(conn, principal)
        mine = views.reviewer_progress(conn, principal)
        evidence = None
        if principal.role in ("admin", "adjudicator"):  # agreement and reviewer tables are not for reviewers
            from clinreason.analytics.charts import dashboard_context

            evidence = dashboard_context(conn, principal.project_id)
    return page(request, "dashboard.html", {"counts": counts, "open_leases": leases, "mine": mine,
                                            "evidence": evidence})


@router.get("/adjudicate")
def adjudicate(principal: SeniorUser, request: Request) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        escalated = views.escalated_items(conn, principal)
    return page(request, "adjudicate.html", {"items": escalated})
