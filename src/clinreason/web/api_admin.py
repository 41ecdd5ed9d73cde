"""Admin actions over JSON: users, projects, rubric versions, importing an uploaded question bank."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from clinreason.domain.accounts import User
from clinreason.domain.rubric import RubricError, rubric_from_dict
from clinreason.stages.ingest_formats import FORMATS
from clinreason.stages.review import ReviewError
from clinreason.store import accounts, db, items, projects
from clinreason.store.common import NotFoundError
from clinreason.store.decisions import add_event
from clinreason.web import auth
from clinreason.web.auth import AdminUser, Principal
from clinreason.web.i18n import N_
from clinreason.web.schemas import NOT_BLANK_PATTERN, errors
from clinreason.web.views import iso

router = APIRouter(prefix="/api/admin", tags=["admin"])
MAX_SOURCE = 200  # characters of an upload's source name


Specialty = Annotated[str, Field(min_length=1, max_length=auth.MAX_SPECIALTY, json_schema_extra={"pattern": NOT_BLANK_PATTERN},
                                 description="a specialty (not blank), e.g. cardiology")]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(min_length=1, max_length=auth.MAX_USERNAME, json_schema_extra={"pattern": auth.USERNAME_PATTERN},
                          description="1-100 ASCII letters, digits or . _ - @")
    password: str = Field(min_length=auth.MIN_PASSWORD, max_length=1000)
    role: auth.Role
    specialties: list[Specialty] = Field(default_factory=list, description="the items offered to this reviewer first")


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    active: bool | None = Field(None, description="false: locked out at once (you cannot lock yourself out)")
    role: auth.Role | None = None
    specialties: list[Specialty] | None = None


#: a text of the rubric: one string, or a table of language -> string ({"en": "…", "zh": "…"})
Texts = str | Annotated[dict[str, str], Field(min_length=1)]
TEXTS_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"},
                                               "minProperties": 1}]}


def keyed(pattern: str, description: str, **extra: Any) -> WithJsonSchema:
    """The document's schema of a table whose keys must match `pattern` (pydantic would write
    `patternProperties`, which lets any other key through; the server refuses them)."""
    return WithJsonSchema({"type": "object", "propertyNames": {"pattern": pattern}, "additionalProperties": TEXTS_SCHEMA,
                           "description": description, **extra})


ANCHOR_KEY = r"^-?[0-9]+$"
CATEGORY_KEY = r"^[a-z][a-z0-9_]{0,39}$"


# A key the server takes when it is absent and refuses when it is null has no default its type admits: None
# stands for "absent" there (`model_dump(exclude_unset=True)` leaves it out), hence the `type: ignore`s.


class DimensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100, description="unique within the rubric: the key of `scores`")
    title: Texts = Field(default=None, description="default: the name, capitalised")  # type: ignore[assignment]
    description: Texts = Field(default=None)  # type: ignore[assignment]
    threshold: int = Field(default=None,  # type: ignore[assignment]
                           description="the least score that passes, within the scale (default: the scale's maximum - 1)")
    anchors: Annotated[dict[Annotated[str, Field(pattern=ANCHOR_KEY)], Texts],
                       keyed(ANCHOR_KEY, "score (within the scale) -> what it means")] = Field(
        default=None)  # type: ignore[arg-type]


class RubricIn(BaseModel):
    """The rubric in its config form. Rules between fields (the scale's min below its max, unique dimension
    names, thresholds and anchors within the scale) are checked too: a 422 names the key that breaks one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dimensions: list[DimensionIn] = Field(min_length=1)
    scale: list[int] = Field(default=None, min_length=2, max_length=2,  # type: ignore[arg-type]
                             description="[min, max], min < max (default [1, 5])")
    require_all_accept: bool | None = None
    step_errors: Annotated[dict[Annotated[str, Field(pattern=CATEGORY_KEY)], Texts],
                           keyed(CATEGORY_KEY, "the clinical error taxonomy: category -> one-line description",
                                 minProperties=1)] | None = Field(None, min_length=1)
    version: int = Field(default=None,  # type: ignore[assignment]
                         description="ignored: a changed rubric gets the next version")


class RubricBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    body: RubricIn = Field(description="the rubric in its config form (dimensions, scale, thresholds, anchors)")


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
    if fmt not in FORMATS:
        raise ReviewError("format", N_("expected one of {choices}, got {value!r}"),
                          {"choices": ", ".join(FORMATS), "value": fmt})
    if source is not None and not isinstance(source, str):
        raise ReviewError("source", N_("a source name, not a file"))
    if source is not None and len(source) > MAX_SOURCE:
        raise ReviewError("source", N_("longer than {n} characters"), {"n": MAX_SOURCE})
    return upload, fmt, source


def answer_base_field(form) -> int | None:
    """The upload's `answer_base` (as `clinreason import --answer-base`): 0, 1 or absent; 422 otherwise."""
    value = form.get("answer_base")
    if value is None or value == "":
        return None
    if value not in ("0", "1"):
        raise ReviewError("answer_base", N_("0 (the first option is 0) or 1 (the first option is 1), got {value!r}"),
                          {"value": value if isinstance(value, str) else "a file"})
    return int(value)


def import_upload(request: Request, principal: Principal, upload: UploadFile, fmt: str,
                  source: str | None, answer_base: int | None = None) -> dict[str, Any]:
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
                                      source=source or None, actor=principal.actor, answer_base=answer_base)
        except ImportAborted as exc:
            raise ReviewError("file", N_("{error} (nothing was imported)"), {"error": str(exc)}) from None
        return summary.to_dict()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@router.get("/users")
def list_users(principal: AdminUser, request: Request) -> dict[str, Any]:
    """Every user of the database, active or not."""
    with request.app.state.web.transaction() as conn:
        return {"users": [user_out(u) for u in auth.list_users(conn)]}


@router.post("/users", status_code=201, responses=errors(_409="the user name is taken (`detail[0].loc` names it)"))
def create_user(body: NewUser, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Add a user."""
    with request.app.state.web.transaction() as conn:
        return add_user(conn, principal, username=body.username, password=body.password, role=body.role,
                        specialties=body.specialties)


@router.patch("/users/{username}", responses=errors(_404="no user of that name"))
def update_user(username: str, body: UserChange, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Change a user's role, specialties or whether they may sign in (null or absent: unchanged)."""
    with request.app.state.web.transaction() as conn:
        return change_user(conn, principal, username, body)


@router.get("/projects")
def list_projects(principal: AdminUser, request: Request) -> dict[str, Any]:
    """The projects of the database, with their item counts, and the one you work in."""
    with request.app.state.web.transaction() as conn:
        return {"projects": project_list(conn), "current": principal.project}


@router.get("/rubric")
def list_rubric_versions(principal: AdminUser, request: Request) -> dict[str, Any]:
    """The current rubric and every earlier version (without their bodies), newest first."""
    with request.app.state.web.transaction() as conn:
        return {"current": projects.latest_rubric(conn, project_id=principal.project_id),
                "versions": rubric_versions_of(conn, principal.project_id)}


@router.put("/rubric")
def store_rubric(body: RubricBody, principal: AdminUser, request: Request) -> dict[str, Any]:
    """Store an edited rubric as a new version (an unchanged one keeps its version)."""
    with request.app.state.web.transaction() as conn:
        return {"version": save_rubric(conn, principal, body.body.model_dump(mode="json", exclude_unset=True))}


UPLOAD_FORMATS = list(FORMATS)
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": (
                "the question-bank file: JSON lines, JSON, CSV/TSV, XLSX (CMExam) or Parquet, as `clinreason "
                "import` reads them (a folder format, `hf` or `argilla`, is imported with the CLI). Its records "
                "are checked by the importer: the first bad one is a 422 naming it, and nothing is imported")},
            "format": {"type": "string", "enum": UPLOAD_FORMATS, "default": "auto",
                       "description": "as `clinreason import --format`; auto: from the name and the content"},
            "source": {"type": "string", "maxLength": MAX_SOURCE, "description": "source name recorded with every item"},
            "answer_base": {"type": "integer", "enum": [0, 1], "description": (
                "as `clinreason import --answer-base`: how bare integer answers count options (0: the first "
                "option is 0; 1: it is 1). A generic file with integer answers and no base is refused")}}},
    "encoding": {"file": {"contentType": "application/octet-stream"}}}}},
    "responses": {
        "400": {"description": "a malformed multipart body, or a Content-Length that is not a number"},
        "413": {"description": "the upload is larger than CLINREASON_MAX_UPLOAD_MB"},
        "422": {"description": "no file in the field `file`, an unknown `format`, a bad `answer_base`, or a bad "
                       "record (named)"}}}


@router.post("/import", dependencies=[Depends(refuse_oversized)], openapi_extra=_UPLOAD_BODY)
async def import_bank(principal: AdminUser, request: Request) -> dict[str, Any]:
    """Import an uploaded question-bank file (same formats and rules as `clinreason import`). The body is
    read only after the caller is known to be an admin, and never past the size limit."""
    form = await read_upload_form(request)
    try:
        upload, fmt, source = upload_fields(form)
        base = answer_base_field(form)
        return await run_in_threadpool(import_upload, request, principal, upload, fmt, source, base)
    finally:
        await form.close()
