"""Admin pages: projects, users, rubric (editing stores a new version), importing an upload, progress."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from clinreason.domain.rubric import RubricError, rubric_from_dict
from clinreason.stages.review import ReviewError
from clinreason.store.projects import latest_rubric, require_project
from clinreason.web import api_admin, auth, i18n
from clinreason.web.auth import AdminUser
from clinreason.web.deps import page, request_language
from clinreason.web.i18n import _

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("")
def admin_index(principal: AdminUser, request: Request) -> HTMLResponse:
    return page(request, "admin_index.html")


@router.get("/projects")
def projects_page(principal: AdminUser, request: Request) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        projects = api_admin.project_list(conn)
    return page(request, "admin_projects.html", {"projects": projects})


@router.post("/projects/switch")
async def switch_project(principal: AdminUser, request: Request) -> Response:
    name = str((await request.form()).get("project", ""))

    def work() -> None:
        with request.app.state.web.transaction() as conn:
            project = require_project(conn, name=name)
            auth.switch_project(conn, principal, project_id=project["id"])

    await run_in_threadpool(work)
    return RedirectResponse("/dashboard", status_code=303)


def _users_page(request: Request, *, error: str | None = None, status_code: int = 200, form: dict | None = None):
    with request.app.state.web.transaction() as conn:
        users = [api_admin.user_out(u) for u in auth.list_users(conn)]
    return page(request, "admin_users.html", {"users": users, "error": error, "form": form or {},
                                              "roles": auth.ROLES, "min_password": auth.MIN_PASSWORD},
                status_code=status_code)


@router.get("/users")
def users_page(principal: AdminUser, request: Request) -> HTMLResponse:
    return _users_page(request)


@router.post("/users")
async def users_add(principal: AdminUser, request: Request) -> Response:
    form = await request.form()
    data: dict[str, Any] = {"username": str(form.get("username", "")).strip(), "role": str(form.get("role", "")),
            "specialties": [s.strip() for s in str(form.get("specialties", "")).split(",") if s.strip()]}

    def work() -> None:
        with request.app.state.web.transaction() as conn:
            api_admin.add_user(conn, principal, password=str(form.get("password", "")), **data)

    try:
        await run_in_threadpool(work)
    except auth.AccountError as exc:
        return _users_page(request, error=field_error(exc), status_code=422, form=data)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{username}/active")
async def users_toggle(username: str, principal: AdminUser, request: Request) -> Response:
    active = (await request.form()).get("active") == "1"

    def work() -> None:
        with request.app.state.web.transaction() as conn:
            api_admin.change_user(conn, principal, username, api_admin.UserChange(active=active))

    try:
        await run_in_threadpool(work)
    except auth.AccountError as exc:
        return _users_page(request, error=field_error(exc), status_code=422)
    return RedirectResponse("/admin/users", status_code=303)


def field_error(exc: auth.AccountError | ReviewError) -> str:
    """A form's error in the request's language: the field (as the API names it) and what is wrong."""
    return _("{field}: {message}").format(field=exc.field, message=i18n.translate_error(exc, exc.message))


def rubric_view(body: dict[str, Any], language: str) -> list[dict[str, Any]]:
    """The stored rubric's dimensions with their texts in `language` (else English, else the one language a
    project's own rubric gives); a body that no longer parses is shown as it is stored."""
    try:
        rubric = rubric_from_dict(body)
    except RubricError:
        return [{"name": d.get("name", ""), "title": d.get("title", ""), "description": d.get("description", ""),
                 "threshold": d.get("threshold", ""), "anchors": d.get("anchors", {})}
                for d in body.get("dimensions", []) if isinstance(d, dict)]
    return [{"name": d.name, "title": d.title_in(language), "description": d.description_in(language),
             "threshold": d.threshold, "anchors": d.anchors_in(language)} for d in rubric.dimensions]


def _rubric_page(request: Request, principal, *, text: str | None = None, error: str | None = None,
                 saved: int | None = None, status_code: int = 200) -> HTMLResponse:
    with request.app.state.web.transaction() as conn:
        current = latest_rubric(conn, project_id=principal.project_id)
        versions = api_admin.rubric_versions_of(conn, principal.project_id)
    # the editor edits the stored body as it is: a text given per language stays a table {"en": …, "zh": …}
    body = {k: v for k, v in current.items() if k != "version"}
    return page(request, "admin_rubric.html", {
        "rubric": current, "dimensions": rubric_view(current, request_language(request)), "versions": versions,
        "error": error, "saved": saved,
        "text": text if text is not None else json.dumps(body, ensure_ascii=False, indent=2)}, status_code=status_code)


@router.get("/rubric")
def rubric_page(principal: AdminUser, request: Request) -> HTMLResponse:
    return _rubric_page(request, principal)


@router.post("/rubric")
async def rubric_save(principal: AdminUser, request: Request) -> Response:
    text = str((await request.form()).get("rubric", ""))
    try:
        body = json.loads(text)
    except ValueError as exc:
        return _rubric_page(request, principal, text=text, error=_("not valid JSON: {error}").format(error=exc),
                            status_code=422)
    if not isinstance(body, dict):
        return _rubric_page(request, principal, text=text, error=_("not valid JSON: {error}").format(
            error=_("expected a JSON object")), status_code=422)

    def work() -> int:
        with request.app.state.web.transaction() as conn:
            return api_admin.save_rubric(conn, principal, body)

    try:
        version = await run_in_threadpool(work)
    except ReviewError as exc:
        return _rubric_page(request, principal, text=text, error=field_error(exc), status_code=422)
    return _rubric_page(request, principal, saved=version)


@router.get("/import")
def import_page(principal: AdminUser, request: Request) -> HTMLResponse:
    return page(request, "admin_import.html", {"summary": None, "error": None})


@router.post("/import", dependencies=[Depends(api_admin.refuse_oversized)])
async def import_submit(principal: AdminUser, request: Request) -> HTMLResponse:
    try:
        form = await api_admin.read_upload_form(request)
    except ReviewError as exc:
        return page(request, "admin_import.html", {"summary": None, "error": i18n.translate_error(exc, exc.message)},
                    status_code=422)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not upload.filename:
            return page(request, "admin_import.html", {"summary": None, "error": _("Choose a file to import.")},
                        status_code=422)
        summary = await run_in_threadpool(api_admin.import_upload, request, principal, upload,
                                          str(form.get("format") or "auto"), str(form.get("source") or "") or None,
                                          api_admin.answer_base_field(form))
    except ReviewError as exc:
        return page(request, "admin_import.html", {"summary": None, "error": i18n.translate_error(exc, exc.message)},
                    status_code=422)
    finally:
        await form.close()
    return page(request, "admin_import.html", {"summary": summary, "error": None})


@router.get("/progress")
def progress_page(principal: AdminUser, request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=303)
