"""POST /api/login, POST /api/logout, GET /api/me."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from clinreason.store.common import now
from clinreason.store.projects import require_project
from clinreason.web import auth
from clinreason.web.auth import AnyUser
from clinreason.web.i18n import N_
from clinreason.web.schemas import MeOut, errors

router = APIRouter(prefix="/api", tags=["auth"])


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"username": "alice", "password": "correct horse battery"}]})

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    project: str | None = Field(None, min_length=1, max_length=200,
                                description="Project to work in (default: the one the server was started for)")


class TokenOut(BaseModel):
    token: str
    expires_at: str
    username: str
    role: auth.Role
    project: str


@router.post("/login", response_model=TokenOut,
             responses=errors(_401="wrong user name or password", _404="no project of that name",
                              _429="too many failed sign-ins for this user name or from this address: wait "
                                   "`Retry-After` seconds"))
def login(body: LoginBody, request: Request) -> TokenOut:
    """Exchange a user name and password for a bearer token (valid for a working day)."""
    web = request.app.state.web
    with web.transaction() as conn:
        user = auth.check_login(conn, username=body.username, password=body.password,
                                client=auth.client_address(request), cfg=web.auth)
        if user is not None:
            project = require_project(conn, name=body.project or web.settings.project)
            expires = now() + timedelta(hours=web.auth.login_token_hours)
            token = auth.create_token(conn, user_id=user.id, project_id=project["id"], kind="login",
                                      name="api login", expires_at=expires)
    if user is None:  # outside the transaction, so the failed attempt is recorded
        raise auth.NotAuthenticated(N_("wrong user name or password"))
    return TokenOut(token=token, expires_at=expires.isoformat(), username=user.username, role=user.role,
                    project=project["name"])


@router.post("/logout", status_code=204)
def logout(principal: AnyUser, request: Request) -> Response:
    """Revoke the token (or end the session) this request was made with."""
    with request.app.state.web.transaction() as conn:
        if principal.via == "token":
            auth.revoke_token(conn, token_hash=principal.credential)
        else:
            auth.end_session(conn, id_hash=principal.credential)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut)
def me(principal: AnyUser) -> dict:
    """Who this request is signed in as, in which project."""
    return {"username": principal.username, "role": principal.role, "specialties": list(principal.specialties),
            "project": principal.project, "language": principal.language}


class LanguageBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    language: Literal["en", "zh"] | None = Field(description="en | zh; null: follow the browser's Accept-Language")


@router.put("/me/language", status_code=204)
def set_language(body: LanguageBody, principal: AnyUser, request: Request) -> Response:
    """Your language for the review app and the API's error messages."""
    with request.app.state.web.transaction() as conn:
        auth.set_language(conn, user_id=principal.user_id, language=body.language)
    return Response(status_code=204)
