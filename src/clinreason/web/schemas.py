"""The OpenAPI document (`/openapi.json`, `clinreason openapi`): the shared error body, the answers every
operation can give, the security schemes, the links between operations, and the models of the main answers.

Each route declares its own body, its success answer and the errors only it gives (`responses=errors(409,
...)`). `complete` adds, in one place, what follows from how a route is built, so a new route is documented
the moment it is registered:

* 401 (with `WWW-Authenticate`) and the security requirement on every route that needs a signed-in user
  (`auth.require`), 403 where it needs a role or changes state (a browser session must send its CSRF token);
* 404 on every route with a path parameter (the id is not in the caller's project);
* 400 and 422 on every route that reads a body or parameters (unreadable body; invalid field, named in `loc`);
* 503 (with `Retry-After`) on every operation: the database is not answering;
* the one error body (`ErrorBody`) on every 4xx/5xx answer, and `info.version` = the package version.

Methods a path does not document answer 405 with `Allow` listing the ones it does; OPTIONS is not served
(same-origin app, no CORS), so it is one of those 405s (`allowed_methods` in app.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

# --- the shared error body ----------------------------------------------------------------------------


class ValidationIssue(BaseModel):
    """One invalid field: where (`["body", "steps[0]", "step"]`: the part of the request, then the field,
    list positions in brackets), what is expected (in the request's language), and a code (English)."""

    loc: list[str] = Field(description='where: "body", "path" or "query", then the field; list positions in '
                                       'brackets, as `steps[0]`')
    msg: str = Field(description="what is wrong and what is expected, in the request's language")
    type: str = Field(description="a code that stays English (`missing`, `literal_error`, `value_error` …)")


class ErrorBody(BaseModel):
    """Every error answer of the API: `detail` is a message in the request's language (`Accept-Language`,
    or the user's own setting), or, for an invalid request, the list of invalid fields."""

    detail: str | list[ValidationIssue]


#: what each error status means, unless the route says more precisely
STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "the body could not be read (not JSON, not UTF-8, or a malformed form)",
    401: "not signed in, or the token expired or was revoked: POST /api/login, then send "
         "`Authorization: Bearer <token>`",
    403: "signed in, but your role may not do this (or a browser session sent no CSRF token)",
    404: "not found in your project",
    409: "the state changed under you (someone else acted first); reload and decide again",
    413: "the body is larger than the server accepts",
    422: "invalid request: `detail[].loc` names each invalid field, `detail[].msg` says what is expected",
    429: "too many attempts: wait `Retry-After` seconds",
    503: "the database is not answering (restarting, or busy with a long write): try again after "
         "`Retry-After` seconds",
}

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "required": True,
                                "schema": {"type": "integer", "minimum": 1}}}
RESPONSE_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def errors(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error statuses only it gives, each with the shared body; a keyword
    `_409="…"` describes one more precisely (and declares it)."""
    out: dict[int | str, dict[str, Any]] = {code: {"description": STATUS_DESCRIPTIONS[code], "model": ErrorBody}
                                            for code in codes}
    for key, text in described.items():
        out[int(key.lstrip("_"))] = {"description": text, "model": ErrorBody}
    return out


def when(field: str, value: str, then: dict[str, Any]) -> dict[str, Any]:
    """A rule of a request body as the document states it (JSON Schema `if`/`then`): when `field` is
    `value`, `then` holds. For rules the server checks between fields, e.g. `text` is required with
    `action: write`."""
    return {"if": {"properties": {field: {"const": value}}, "required": [field]}, "then": then}


#: "not blank": a character that is not white space as Python's `str.strip()` sees it (the server's test),
#: spelled out so that every regex dialect reads it alike (`\S` is ASCII in some, Unicode in others)
NOT_BLANK_PATTERN = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

#: a text that must be given (the server also refuses one of spaces only; a `pattern` here would make long
#: texts with a maxLength impossible to generate for a fuzzer, so the document says it in words)
GIVEN_TEXT = {"type": "string", "minLength": 1}


# --- the main answers (documented; the handlers build them as plain dicts in views.py) ------------------

class _Open(BaseModel):
    """An answer that may carry more keys than the ones named (new ones are added without notice)."""

    model_config = ConfigDict(extra="allow")


class SourceOut(_Open):
    source: str | None
    file: str | None
    record: str | int | None
    subject: str | None
    license: str | None


class ItemOut(_Open):
    id: str
    question: str
    options: dict[str, str] = Field(description="label -> text (empty for an open question)")
    answer: list[str] = Field(description="the gold answer's labels (several for a multi-answer question)")
    answer_text: str | None
    language: str
    specialty: str | None
    context: str | None
    state: str
    strikes: int
    flag_reason: str | None
    reference_explanation: str | None = Field(
        None, description="the bank's own explanation, only where you may see it (`[review] show_reference`)")


class RationaleOut(_Open):
    id: str
    version: int
    parent_version: int | None
    origin: str
    author: str | None
    text: str
    steps: list[str]
    final_answer: list[str]
    model: str | None
    parse_status: str
    reasoning: str | None = Field(description="the model's own scratch work, not part of the rationale")
    created_at: str | None


class CheckOut(_Open):
    rationale_id: str
    name: str
    passed: bool
    blocking: bool
    score: float | None
    detail: str | None
    created_at: str | None
    version: int | None = None


class AssignmentItemOut(ItemOut):
    sources: list[SourceOut]


class DraftOut(_Open):
    body: dict[str, Any]
    seconds_spent: float | None
    updated_at: str | None


class AssignmentOut(_Open):
    """A leased rationale version to review, with what the review screen shows beside it."""

    assignment_id: str
    status: str
    expires_at: str | None
    created_at: str | None
    item: AssignmentItemOut
    rationale: RationaleOut
    parent: RationaleOut | None = Field(description="the version this one was made from, if any")
    checks: list[CheckOut]
    rubric: dict[str, Any] = Field(description="the project's current rubric (as GET /api/rubric)")
    draft: DraftOut | None


class ReviewSeen(_Open):
    id: str
    rationale_id: str
    version: int | None
    reviewer: str | None
    verdict: str
    scores: dict[str, int]
    comments: dict[str, str]
    edited_text: str | None
    seconds_spent: float | None
    rubric_version: int
    created_at: str | None
    steps: list[dict[str, Any]]


class EventOut(_Open):
    kind: str
    actor: str | None
    at: str | None
    before: Any
    after: Any
    detail: dict[str, Any]


class ItemHistoryOut(ItemOut):
    """An item's whole story as the caller may see it."""

    versions: list[RationaleOut]
    checks: list[CheckOut]
    reviews: list[ReviewSeen] = Field(description="only the reviews you may see (blind review)")
    step_history: Any
    events: list[EventOut]
    sources: list[SourceOut]


class MeOut(BaseModel):
    username: str
    role: str
    specialties: list[str]
    project: str
    language: str | None


# --- the links the stateful phase (and a reader) follows -------------------------------------------------

#: operationId -> status -> link name -> (target operationId, {target parameter: runtime expression})
LINKS: dict[str, dict[str, dict[str, tuple[str, dict[str, str]]]]] = {
    "queue_next": {"200": {
        "SubmitReview": ("submit_review", {"assignment_id": "$response.body#/assignment_id"}),
        "SaveDraft": ("save_draft", {"assignment_id": "$response.body#/assignment_id"}),
        "GiveBack": ("release_assignment", {"assignment_id": "$response.body#/assignment_id"}),
        "GetAssignment": ("get_assignment", {"assignment_id": "$response.body#/assignment_id"}),
        "GetItem": ("get_item", {"item_id": "$response.body#/item/id"}),
    }},
    "get_assignment": {"200": {
        "SubmitReview": ("submit_review", {"assignment_id": "$response.body#/assignment_id"}),
        "GetItem": ("get_item", {"item_id": "$response.body#/item/id"}),
    }},
    "escalated_items": {"200": {
        "GetItem": ("get_item", {"item_id": "$response.body#/items/0/id"}),
        "Adjudicate": ("adjudicate_item", {"item_id": "$response.body#/items/0/id"}),
    }},
    "list_calibration": {"200": {
        "GetItem": ("get_item", {"item_id": "$response.body#/items/0/item_id"}),
        "Withdraw": ("withdraw_calibration", {"item_id": "$response.body#/items/0/item_id"}),
    }},
    "mark_calibration": {"201": {
        "GetItem": ("get_item", {"item_id": "$response.body#/item_id"}),
        "Withdraw": ("withdraw_calibration", {"item_id": "$response.body#/item_id"}),
    }},
    "list_users": {"200": {"ChangeUser": ("update_user", {"username": "$response.body#/users/0/username"})}},
    "create_user": {"201": {"ChangeUser": ("update_user", {"username": "$response.body#/username"})}},
}

SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer",
                    "description": "a token from POST /api/login (a working day) or `clinreason users token NAME`"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "clinreason_session",
                      "description": "the browser's session (sign in at /login); a state-changing request with it "
                                     "must also send the session's CSRF token in the `X-CSRF-Token` header"},
}


# --- completing the document ------------------------------------------------------------------------

def operation_id(route: APIRoute) -> str:
    """An operation is named by its handler (`submit_review`): the names the generated clients use."""
    return route.name


def required_roles(route: APIRoute) -> tuple[str, ...] | None:
    """The roles the route's `auth.require` dependency accepts (() for any signed-in user); None when the
    route needs nobody signed in."""
    def walk(dependant: Any) -> Iterator[Any]:
        for dep in dependant.dependencies:
            yield dep.call
            yield from walk(dep)

    for call in walk(route.dependant):
        roles = getattr(call, "required_roles", None)
        if roles is not None:
            return tuple(roles)
    return None


def _reads_input(route: APIRoute, operation: dict[str, Any]) -> bool:
    return route.body_field is not None or "requestBody" in operation or bool(operation.get("parameters"))


def _answer(operation: dict[str, Any], status: int, description: str) -> None:
    """Declare `status` on `operation` (keeping a route's own, more precise description) with the shared
    error body and the headers it always carries."""
    responses = operation.setdefault("responses", {})
    answer = responses.setdefault(str(status), {"description": description})
    answer["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    if status in RESPONSE_HEADERS:
        answer["headers"] = RESPONSE_HEADERS[status]


def complete(document: dict[str, Any], routes: Iterable[APIRoute]) -> dict[str, Any]:
    """Add to FastAPI's document what every operation of `routes` answers (see the module's docstring)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, ValidationIssue):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's own 422 body: replaced by ErrorBody
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    by_id: dict[str, tuple[str, str]] = {}
    for route in routes:
        if not (route.include_in_schema and route.path.startswith("/api/")):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation = document["paths"][route.path][method.lower()]
            by_id[operation["operationId"]] = (route.path, method.lower())
            roles = required_roles(route)
            changes = method not in ("GET", "HEAD", "OPTIONS")
            described = {int(status) for status in operation.get("responses", {})}
            statuses = {503}
            if roles is not None:
                operation["security"] = [{"bearerToken": []}, {"sessionCookie": []}]
                statuses.add(401)
            if roles and 403 not in described:
                _answer(operation, 403, f"signed in, but this needs the {' or '.join(roles)} role"
                                        + (" (or a browser session sent no CSRF token)" if changes else ""))
            elif roles is not None and changes:
                statuses.add(403)
            if "{" in route.path:
                statuses.add(404)
            if _reads_input(route, operation):
                statuses.add(422)
            if route.body_field is not None:
                statuses.add(400)
            for code in sorted(statuses):
                _answer(operation, code, STATUS_DESCRIPTIONS[code])
            for key, answer in operation.get("responses", {}).items():
                if key.startswith(("4", "5")):
                    _answer(operation, int(key), answer.get("description") or STATUS_DESCRIPTIONS[int(key)])
    for source, by_status in LINKS.items():
        if source not in by_id:
            continue  # a link table entry for a route another build does not register
        path, method = by_id[source]
        for status, links in by_status.items():
            answer = document["paths"][path][method]["responses"][status]
            answer["links"] = {name: {"operationId": target, "parameters": params}
                               for name, (target, params) in links.items() if target in by_id}
    return document


def build_document(app: FastAPI, routes: Iterable[APIRoute]) -> dict[str, Any]:
    """The whole document of `app` (what /openapi.json serves); `routes`: its API routes, as registered."""
    document = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                           description=app.description, routes=app.routes, tags=app.openapi_tags,
                           servers=app.servers)
    return complete(document, routes)


def install(app: FastAPI, routes: Callable[[], Iterable[APIRoute]]) -> None:
    """Serve `build_document` at the app's openapi_url, built once, at the first request for it."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app, routes())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

