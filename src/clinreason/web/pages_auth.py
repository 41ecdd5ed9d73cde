"""Signing in and out in the browser, and the landing redirect."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from clinreason.store.projects import list_projects, require_project
from clinreason.web import auth, i18n
from clinreason.web.auth import AnyUser
from clinreason.web.deps import page
from clinreason.web.i18n import N_, _

router = APIRouter(include_in_schema=False)
HOME = {"reviewer": "/review", "adjudicator": "/adjudicate", "admin": "/dashboard"}


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: never '//host' or a scheme (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _cookie_secure(request: Request) -> bool:
    cfg = request.app.state.web.auth
    return cfg.secure_cookies if cfg.secure_cookies is not None else request.url.scheme == "https"


def _login_page(request: Request, *, error: str | None = None, status_code: int = 200, username: str = "",
                next_url: str | None = None) -> Response:
    web = request.app.state.web
    token = secrets.token_urlsafe(32)
    with web.transaction() as conn:
        names = [p["name"] for p in list_projects(conn)]
    response = page(request, "login.html", {"login_csrf": token, "error": error, "username": username,
                                            "next": next_url or "", "projects": names,
                                            "default_project": web.settings.project}, status_code=status_code)
    response.set_cookie(auth.LOGIN_CSRF_COOKIE, auth.sign_login_csrf(web.auth, token), max_age=3600, httponly=True,
                        samesite="strict", secure=_cookie_secure(request), path="/login")
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None, lang: str | None = None) -> Response:
    """The sign-in page; `?lang=zh|en` (the language links on it) is remembered in a cookie until sign-in,
    when the user's own setting takes over."""
    chosen = i18n.normalise(lang)
    if chosen:
        request.cookies[i18n.LANGUAGE_COOKIE] = chosen  # this page already in the chosen language
    response = _login_page(request, next_url=_safe_next(next))
    if chosen:
        response.set_cookie(i18n.LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True, samesite="lax",
                            secure=_cookie_secure(request), path="/")
    return response


@router.post("/language")
async def language_submit(principal: AnyUser, request: Request) -> Response:
    """The language control in the page header: stores the signed-in user's choice."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    chosen = i18n.normalise(str(form.get("language", "")))
    if chosen is None:
        raise auth.AccountError("language", N_("expected one of {choices}"), {"choices": ", ".join(i18n.SUPPORTED)})

    def store() -> None:
        with request.app.state.web.transaction() as conn:
            auth.set_language(conn, user_id=principal.user_id, language=chosen)

    await run_in_threadpool(store)
    response = RedirectResponse(_safe_next(str(form.get("next", ""))) or "/", status_code=303)
    response.set_cookie(i18n.LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True, samesite="lax",
                        secure=_cookie_secure(request), path="/")
    return response


@router.post("/login")
async def login_submit(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    web = request.app.state.web
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    next_url = _safe_next(str(form.get("next", "")))
    if not auth.check_login_csrf(web.auth, request.cookies.get(auth.LOGIN_CSRF_COOKIE), str(form.get("csrf_token", ""))):
        return _login_page(request, error=_("The sign-in form expired: please try again."), status_code=403,
                           username=username, next_url=next_url)
    if not username or not password:
        return _login_page(request, error=_("Enter your user name and password."), status_code=422, username=username,
                           next_url=next_url)

    def _check():
        with web.transaction() as conn:
            user = auth.check_login(conn, username=username, password=password, client=auth.client_address(request),
                                    cfg=web.auth)
            if user is None:
                return None
            project = require_project(conn, name=str(form.get("project") or web.settings.project))
            old = request.cookies.get(auth.SESSION_COOKIE)
            session_id, _csrf = auth.create_session(conn, user_id=user.id, project_id=project["id"], cfg=web.auth,
                                                    replaces=auth.unsign_session(web.auth, old) if old else None)
            return user, session_id

    try:
        result = await run_in_threadpool(_check)
    except auth.LoginThrottled as exc:
        response = _login_page(request, error=i18n.translate_error(exc), status_code=429, username=username, next_url=next_url)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if result is None:
        return _login_page(request, error=_("Wrong user name or password."), status_code=401, username=username,
                           next_url=next_url)
    user, session_id = result
    response = RedirectResponse(next_url or HOME.get(user.role, "/"), status_code=303)
    response.set_cookie(auth.SESSION_COOKIE, auth.sign_session(web.auth, session_id),
                        max_age=int(web.auth.session_hours * 3600), httponly=True, samesite="lax",
                        secure=_cookie_secure(request), path="/")
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(principal: AnyUser, request: Request) -> Response:
    with request.app.state.web.transaction() as conn:
        if principal.via == "session":
            auth.end_session(conn, id_hash=principal.credential)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(principal: AnyUser) -> Response:
    return RedirectResponse(HOME.get(principal.role, "/dashboard"), status_code=303)
