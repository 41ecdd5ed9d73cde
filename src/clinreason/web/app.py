"""The FastAPI application: JSON API under /api/ and the server-rendered review UI (Jinja2 + htmx)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from clinreason.config import Settings
from clinreason.stages.review import AssignmentClosed, AssignmentNotFound, NotYourAssignment, ReviewError
from clinreason.store import db
from clinreason.store.common import NotFoundError, StaleStateError
from clinreason.store.db import database_unavailable, error_summary
from clinreason.store.projects import require_project
from clinreason.web import (
    api_adjudicate,
    api_admin,
    api_auth,
    api_calibration,
    api_items,
    api_privacy,
    api_review,
    auth,
    i18n,
    pages_admin,
    pages_auth,
    pages_items,
    pages_privacy,
    pages_review,
    render,
    schemas,
)
from clinreason.web.deps import WebState, answer_in_request_language, is_api, page
from clinreason.web.proxies import TrustedProxyHeaders
from clinreason.web.views import NotFound

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'; connect-src 'self'")

__all__ = ["WebState", "create_app", "app_from_environment", "openapi_document", "page", "route_modules"]

NOT_SIGNED_IN = i18n.N_("not signed in: POST /api/login, then send 'Authorization: Bearer <token>'")
DATABASE_DOWN = i18n.N_("the database is not answering: try again in a few seconds")
#: seconds a client is asked to wait when the database is not answering
RETRY_DATABASE_SECONDS = 5
#: Starlette's own answers for a path or method that is not there (translated like every other message)
_STARLETTE_DETAILS = (i18n.N_("Not Found"), i18n.N_("Method Not Allowed"))


class SecurityHeaders:
    """Pure ASGI middleware: CSP and friends on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                headers += [(k, v) for k, v in extra if k not in names]
                if scope["path"] != "/openapi.json" and not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.autoescape = True
    env.add_extension("jinja2.ext.i18n")
    # the callables read the request's language (i18n.language, set by deps.page around each render)
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["markdown"] = render.render_markdown
    env.globals["side_by_side"] = render.side_by_side
    env.globals["diff_stats"] = render.diff_stats
    return templates


def field_loc(loc: tuple | list) -> list[str]:
    """A pydantic error's location as the API names fields: `["body", "steps[0]", "step"]`, list positions
    in brackets after the field that holds them (as the review stage names a step mark)."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int) and out:
            out[-1] = f"{out[-1]}[{part}]"
        else:
            out.append(str(part))
    return out


def api_routes() -> list[APIRoute]:
    """Every route of the routers, as registered (`route_modules`)."""
    return [route for module in route_modules() for route in module.router.routes if isinstance(route, APIRoute)]


def allowed_methods(request: Request) -> list[str]:
    """The methods the requested path serves (every route of it, not only the first that matched)."""
    methods: set[str] = set()
    for route in [*api_routes(), *request.app.router.routes]:
        if not isinstance(route, (APIRoute, Route)):
            continue
        match, _child = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(route.methods or ())
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))


def _error_response(request: Request, status: int, exc: BaseException, *, message: str | None = None,
                    field: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """`exc` in the request's language (its marked template and values, or its message looked up as it is;
    field names and codes stay English); the API answers JSON, a page the error page."""
    message = i18n.translate_error(exc, message)
    if is_api(request):
        body: dict[str, Any]
        if field is not None:
            body = {"detail": [{"loc": ["body", *field.split(".")] if field else ["body"], "msg": message,
                                "type": "value_error"}]}
        else:
            body = {"detail": message}
        return JSONResponse(body, status_code=status, headers=headers)
    return page(request, "error.html", {"status": status, "message": message}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(auth.NotAuthenticated)
    async def _unauthenticated(request: Request, exc: auth.NotAuthenticated) -> Response:
        if is_api(request):
            detail = i18n.translate_error(exc) if str(exc) else i18n.gettext(NOT_SIGNED_IN)
            return JSONResponse({"detail": detail},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        target = "/login?next=" + quote(request.url.path, safe="/")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(auth.Forbidden)
    async def _forbidden(request: Request, exc: auth.Forbidden) -> Response:
        return _error_response(request, 403, exc)

    @app.exception_handler(NotYourAssignment)
    async def _not_yours(request: Request, exc: NotYourAssignment) -> Response:
        return _error_response(request, 403, exc)

    @app.exception_handler(NotFound)
    @app.exception_handler(AssignmentNotFound)
    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: Exception) -> Response:
        return _error_response(request, 404, exc)

    @app.exception_handler(AssignmentClosed)
    async def _closed(request: Request, exc: AssignmentClosed) -> Response:
        return _error_response(request, 409, exc)

    @app.exception_handler(StaleStateError)
    async def _stale(request: Request, exc: StaleStateError) -> Response:
        return _error_response(request, 409, exc)

    @app.exception_handler(ReviewError)
    async def _invalid_review(request: Request, exc: ReviewError) -> Response:
        return _error_response(request, 422, exc, message=exc.message, field=exc.field)

    @app.exception_handler(auth.UsernameTaken)
    async def _taken(request: Request, exc: auth.UsernameTaken) -> Response:
        return _error_response(request, 409, exc, message=exc.message, field=exc.field)

    @app.exception_handler(auth.AccountError)
    async def _invalid_account(request: Request, exc: auth.AccountError) -> Response:
        return _error_response(request, 422, exc, message=exc.message, field=exc.field)

    @app.exception_handler(auth.LoginThrottled)
    async def _throttled(request: Request, exc: auth.LoginThrottled) -> Response:
        return _error_response(request, 429, exc, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default answer echoes the offending input back, and an input such as Infinity or NaN
        # is not JSON: it would turn a 422 into a 500. Name the field and the problem, not the value.
        # The message follows the request's language; loc and type stay as they are.
        # (a JSON syntax error's location is the character offset: ["body", "12"], not a list position)
        detail = [{"loc": field_loc(e.get("loc", ())) if e.get("type") != "json_invalid"
                   else [str(p) for p in e.get("loc", ())], "msg": i18n.translate_validation(e),
                   "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(request: Request, exc: Exception) -> Response:
        if not database_unavailable(exc):
            raise exc  # a bug, not an outage: the server's 500 (logged with its traceback)
        # one line, no traceback: an outage is the operator's news, not a bug (the pool reconnects by itself)
        log.warning("%s %s: 503, the database is not answering (%s)", request.method, request.url.path,
                    error_summary(exc))
        message = i18n.gettext(DATABASE_DOWN)
        headers = {"Retry-After": str(RETRY_DATABASE_SECONDS)}
        if is_api(request):
            return JSONResponse({"detail": message}, status_code=503, headers=headers)
        response = page(request, "error.html", {"status": 503, "message": message}, status_code=503)
        response.headers.update(headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if getattr(request.state, "principal", None) is None:  # e.g. a 404 or 405 of routing: no route ran
            i18n.use(i18n.for_request(request))
        detail = i18n.translate_error(exc, exc.detail) if isinstance(exc.detail, str) else exc.detail
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method the path serves, not only those of the first route matched
            headers["Allow"] = ", ".join(allowed_methods(request))
        if is_api(request) or request.url.path == "/openapi.json":
            return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers or None)
        response = page(request, "error.html", {"status": exc.status_code, "message": detail},
                        status_code=exc.status_code)
        response.headers.update(headers)
        return response


API_DESCRIPTION = (
    "Expert review of LLM-drafted clinical reasoning. Authenticate with POST /api/login (or a personal token from "
    "`clinreason users token NAME`) and send `Authorization: Bearer <token>`. Errors are `{\"detail\": ...}` "
    "(`ErrorBody`), in the request's language (`Accept-Language: zh` or `en`, or the user's own setting); "
    "field names and codes stay English. A method a path does not list answers 405 with `Allow`; OPTIONS is "
    "not served.")


def route_modules() -> tuple:
    """Every module that defines routes, in the order create_app registers them. The role-matrix test walks
    these, so a new route is checked for authentication and roles the moment it is added here."""
    return (api_auth, api_review, api_items, api_admin, api_adjudicate, api_calibration, api_privacy, pages_auth,
            pages_review, pages_items, pages_admin, pages_privacy)


def create_app(settings: Settings, *, engine: Engine | None = None, auth_config: auth.AuthConfig | None = None) -> FastAPI:
    """Build the app for `settings` (its project is the default one at sign-in). Connects here, never at import."""
    if engine is None:
        from clinreason.app import open_context

        opened = open_context(settings)
        engine, settings = opened.engine, opened.settings  # the project's stored configuration
    with db.transaction(engine) as conn:
        require_project(conn, name=settings.project)
        secret = os.environ.get("CLINREASON_SECRET_KEY") or auth.ensure_secret(conn)
    if auth_config is None:
        auth_config = auth.AuthConfig(secret_key=secret)

    app = _routed_app()
    app.state.web = WebState(settings=settings, engine=engine, auth=auth_config, templates=_templates())
    app.add_middleware(SecurityHeaders)
    # X-Forwarded-For / -Proto believed only from the proxies the project names ([web] trusted_proxies)
    app.add_middleware(TrustedProxyHeaders, trusted_proxies=settings.project_config.web.trusted_proxies)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _install_error_handlers(app)
    return app


def _routed_app() -> FastAPI:
    """The FastAPI app with every router, and its OpenAPI document; no state, nothing connected."""
    from clinreason import __version__ as version

    app = FastAPI(title="clinreason", version=version, docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  dependencies=[Depends(answer_in_request_language)], description=API_DESCRIPTION,
                  generate_unique_id_function=schemas.operation_id)
    schemas.install(app, api_routes)
    for module in route_modules():
        app.include_router(module.router)
    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document /openapi.json serves, built without a database or a server
    (`clinreason openapi`)."""
    return _routed_app().openapi()


def app_from_environment() -> FastAPI:
    """The app for the settings in the environment (CLINREASON_DB, CLINREASON_PROJECT, CLINREASON_CONFIG):
    the factory each process of `clinreason serve --workers N` calls."""
    from clinreason.config import resolve_settings

    return create_app(resolve_settings())
