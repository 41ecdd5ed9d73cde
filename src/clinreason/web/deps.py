"""What the app and every router share: the per-app state (settings, engine, auth, templates), one
transaction per unit of work, and page rendering. A leaf module: it imports no router, so routers and
app.py both import it."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine

from clinreason.config import Settings
from clinreason.store import db
from clinreason.web import auth, i18n


@dataclass
class WebState:
    settings: Settings
    engine: Engine
    auth: auth.AuthConfig
    templates: Jinja2Templates

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work (commit on success, rollback on error), in this process's write turn
        (`store.db.transaction`: SQLite allows one writer, so writers queue fairly instead of retrying)."""
        with db.transaction(self.engine) as conn:
            yield conn


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


@contextmanager
def transaction(request: Request) -> Iterator[Connection]:
    """`WebState.transaction` of the app serving `request`."""
    with web_state(request).transaction() as conn:
        yield conn


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def request_language(request: Request) -> str:
    """The language this request is answered in (web/i18n.py: the user's setting, the pre-sign-in cookie,
    Accept-Language, the project's `[project] language`)."""
    principal = getattr(request.state, "principal", None)
    return i18n.for_request(request, getattr(principal, "language", None))


async def answer_in_request_language(request: Request) -> None:
    """An app-wide dependency: before anyone is signed in (the login page, a 401), the request is answered
    in the cookie's, the browser's or the project's language; `auth.require` refines it with the user's."""
    i18n.use(i18n.for_request(request))


def page(request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200) -> HTMLResponse:
    """Render a page in the request's language; the signed-in user (and their CSRF token) are always in
    the context."""
    principal = getattr(request.state, "principal", None)
    lang = request_language(request)
    ctx = {"principal": principal, "csrf_token": principal.csrf_token if principal else None, "lang": lang,
           "languages": i18n.NAMES, **(context or {})}
    with i18n.language(lang):  # Starlette renders the template right here, in this call
        ctx.setdefault("role_names", i18n.role_names())
        response = web_state(request).templates.TemplateResponse(request, name, ctx, status_code=status_code)
    response.headers["content-language"] = "zh-Hans" if lang == "zh" else lang
    return response
