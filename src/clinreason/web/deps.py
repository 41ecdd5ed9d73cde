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
from clinreason.web import auth


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


def page(request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200) -> HTMLResponse:
    """Render a page; the signed-in user (and their CSRF token) are always in the context."""
    principal = getattr(request.state, "principal", None)
    ctx = {"principal": principal, "csrf_token": principal.csrf_token if principal else None, **(context or {})}
    return web_state(request).templates.TemplateResponse(request, name, ctx, status_code=status_code)
