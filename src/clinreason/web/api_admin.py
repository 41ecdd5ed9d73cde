"""Admin actions over JSON: users, projects, rubric versions, importing an uploaded question bank."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from clinreason.domain.accounts import User
from clinreason.domain.rubric import RubricError, rubric_from_dict
from clinreason.stages.review import ReviewError
from clinreason.store import accounts, db, items, projects
from clinreason.store.common import NotFoundError
from clinreason.store.decisions import add_event
from clinreason.web import auth
from clinreason.web.auth import AdminUser, Principal
from clinreason.web.i18n import N_
from clinreason.web.views import iso

router = APIRouter(prefix="/api/admin", tags=["admin"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=auth.MIN_PASSWORD, max_length=1000)
    role: str
    specialties: list[str] = Field(default_factory=list)


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool | None = None
    role: str | None = None
    specialties: list[str] | None = None


class RubricBody(BaseModel):
    body: dict[str, Any] = Field(description="the rubric in its config form (dimensions, scale, thresholds, anchors)")


def user_out(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "role": user.role, "specialties": user.specialties,
            "active": user.active, "created_at": iso(user.created_at)}


def _user(conn: Connection, user_id: int) -> User:
    user = accounts.get_user_by_id(conn, user_id=user_id)
    if user is None:
        raise NotFoundError(N_("no user with id {user_id}"), {"user_id": user_id})
    return user


def add_user(conn: Connection, principal: Principal, *, username: str, password: str, role: str,
             specialties: list[str]) -> dict[str, Any]:
    uid = auth.create_user(conn, username=username, role=role, password=password, specialties=specialties,
                           actor=principal.actor, project_id=principal.project_id)
    return user_out(_user(conn, uid))


def change_user(conn: Connection, principal: Principal, username: str, change: UserChange) -> dict[str, Any]:
    user = accounts.get_user(conn, username=username)
    if user is None:
        raise NotFoundError(N_("no user named '{username}'"), {"username": username})
    values = change.model_dump(exclude_none=True)
    auth.validate_account(username=username, role=values.get("role", user.role),
                          specialties=values.get("specialties", user.specialties), password=None)
    if user.id == principal.user_id and (values.get("active") is False or values.get("role", "admin") != "admin"):
        raise auth.AccountError("active" if "active" in values else "role", N_("you cannot lock yourself out"))
    if values:
        accounts.update_user(conn, user_id=user.id, **values)
        add_event(conn, project_id=principal.project_id, kind="user.changed", actor=principal.actor,
                  before={k: getattr(user, k) for k in values}, after={"username": username, **values})
    return user_out(_user(conn, user.id))


def project_list(conn: Connection) -> list[dict[str, Any]]:
    counts = items.project_item_counts(conn)
    return [{"id": p["id"], "name": p["name"], "items": counts.get(p["id"], 0), "created_at": iso(p["created_at"])}
            for p in projects.list_projects(conn)]


def rubric_versions_of(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """Every rubric version of the project, newest first (without the bodies)."""
    return [{"version": r["version"], "created_by": r["created_by"], "created_at": iso(r["created_at"])}
            for r in reversed(projects.rubric_history(conn, project_id=project_id))]


def save_rubric(conn: Connection, principal: Principal, body: dict[str, Any]) -> int:
    try:
        rubric_from_dict(body)
    except RubricError as exc:
        field, _, message = str(exc).partition(": ")
        raise ReviewError("body." + field.removeprefix("rubric."), message) from None
    return projects.add_rubric_version(conn, project_id=principal.project_id, body=body, actor=principal.actor)


class UploadTooLarge(MultiPartException):
    """The body passed the size limit while it was being read (a MultiPartException, so the parser closes
    the spooled files it had opened)."""


def upload_limit(request: Request) -> int:
    return request.app.state.web.settings.max_upload_bytes


def http_error(status: int, template: str, params: dict[str, Any] | None = None) -> HTTPException:
    """An HTTPException whose detail is a marked template with its values: the app's handler answers it
    in the request's language (web/i18n.py translate_error), `detail` stays English."""
    exc = HTTPException(status, template.format(**params) if params is not None else template)
    exc.template, exc.params = template, params  # type: ignore[attr-defined]
    return exc


def too_large(limit: int) -> HTTPException:
    return http_error(413, N_("the upload is larger than the limit of {mib:g} MiB (CLINREASON_MAX_UPLOAD_MB); "
                              "import large files with `clinreason import` instead"), {"mib": limit / 1024 / 1024})


def refuse_oversized(request: Request) -> None:
    """Refuse by the declared Content-Length before any of the body is read (a dependency listed before the
    one that checks the CSRF token, which reads the form). A body without one is counted as it arrives."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise http_error(400, N_("the Content-Length header is not a number")) from None
    if length > upload_limit(request):
        raise too_large(upload_limit(request))


async def read_upload_form(request: Request):
    """The multipart form of an upload, read as a stream that stops at the size limit: never more than the
    limit is read, and file parts are spooled to disk, not held in memory."""
    refuse_oversized(request)
    limit = upload_limit(request)
    if getattr(request, "_form", None) is not None:  # read already: a browser session's CSRF check needs a field
        form = await request.form()
        if sum(v.size or 0 for _, v in form.multi_items() if isinstance(v, UploadFile)) > limit:
            await form.close()
            raise too_large(limit)
        return form
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ReviewError("file", N_("send the question bank as multipart/form-data with the file in the field 'file'"))

    async def counted():
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise UploadTooLarge("too large")
            yield chunk

    parser = MultiPartParser(request.headers, counted(), max_files=1, max_fields=10)
    try:
        return await parser.parse()
    except UploadTooLarge:
        raise too_large(limit) from None
    except MultiPartException as exc:
        raise http_error(400, N_("malformed multipart body: {error}"), {"error": exc.message}) from None


def upload_fields(form) -> tuple[UploadFile, str, str | None]:
    """(file, format, source) from an upload form; 422 naming the field that is wrong."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ReviewError("file", N_("a question-bank file in the form field 'file'"))
    fmt = form.get("format") or "auto"
    source = form.get("source") or None
    if not isinstance(fmt, str):
        raise ReviewError("format", N_("a format name, not a file"))
    if source is not None and not isinstance(source, str):
        raise ReviewError("source", N_("a source name, not a file"))
    return upload, fmt, source


def import_upload(request: Request, principal: Principal, upload: UploadFile, fmt: str,
                  source: str | None) -> dict[str, Any]:
    """Import an uploaded file into the caller's project (one transaction, as `clinreason import`)."""
    from clinreason.stages.ingest import ImportAborted, import_path

    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.filename or "upload").name).lstrip(".") or "upload"
    workdir = Path(tempfile.mkdtemp(prefix="clinreason-upload-"))
    try:
        target = workdir / name
        limit = upload_limit(request)
        with target.open("wb") as fh:  # the form was bounded already; this guards direct callers too
            copied = 0
            while block := upload.file.read(1 << 20):
                copied += len(block)
                if copied > limit:
                    raise too_large(limit)
                fh.write(block)
        web = request.app.state.web
        try:
            with db.write_coordinator(web.engine):
                summary = import_path(web.engine, project=principal.project, path=target, fmt=fmt,
                                      source=source or None, actor=principal.actor)
        except ImportAborted as exc:
            raise ReviewError("file", N_("{error} (nothing was imported)"), {"error": str(exc)}) from None
        return summary.to_dict()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@router.get("/users")
def get_users(principal: AdminUser, request: Request) -> dict[str, Any]:
    with request.app.state.web.transaction() as conn:
        return {"users": [user_out(u) for u in auth.list_users(conn)]}


@router.post("/users", status_code=201)
def post_user(body: NewUser, principal: AdminUser, request: Request) -> dict[str, Any]:
    with request.app.state.web.transaction() as conn:
        return add_user(conn, principal, username=body.username, password=body.password, role=body.role,
                        specialties=body.specialties)


@router.patch("/users/{username}")
def patch_user(username: str, body: UserChange, principal: AdminUser, request: Request) -> dict[str, Any]:
    with request.app.state.web.transaction() as conn:
        return change_user(conn, principal, username, body)


@router.get("/projects")
def get_projects(principal: AdminUser, request: Request) -> dict[str, Any]:
    with request.app.state.web.transaction() as conn:
        return {"projects": project_list(conn), "current": principal.project}


@router.get("/rubric")
def get_rubric_versions(principal: AdminUser, request: Request) -> dict[str, Any]:
    with request.app.state.web.transaction() as conn:
        return {"current": projects.latest_rubric(conn, project_id=principal.project_id),
                "versions": rubric_versions_of(conn, principal.project_id)}


@router.put("/rubric")
def put_rubric(body: RubricBody, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Store an edited rubric as a new version (an unchanged one keeps its version)."""
    with request.app.state.web.transaction() as conn:
        return {"version": save_rubric(conn, principal, body.body)}


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the question-bank file"},
        "format": {"type": "string", "default": "auto", "description": "as `clinreason import --format`"},
        "source": {"type": "string", "description": "source name recorded with every item"}}}}}},
    "responses": {"413": {"description": "the upload is larger than CLINREASON_MAX_UPLOAD_MB"}}}


@router.post("/import", dependencies=[Depends(refuse_oversized)], openapi_extra=_UPLOAD_BODY)
async def post_import(principal: AdminUser, request: Request) -> dict[str, Any]:
    """Import an uploaded question-bank file (same formats and rules as `clinreason import`). The body is
    read only after the caller is known to be an admin, and never past the size limit."""
    form = await read_upload_form(request)
    try:
        upload, fmt, source = upload_fields(form)
        return await run_in_threadpool(import_upload, request, principal, upload, fmt, source)
    finally:
        await form.close()
