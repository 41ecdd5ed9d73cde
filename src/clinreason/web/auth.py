"""Accounts, sessions, API tokens, CSRF and the login rate limit. Plain functions over a Connection, plus
the FastAPI dependencies that turn a request into a Principal (or a 401/403).

* Passwords: argon2id (argon2-cffi); a stored hash with weaker parameters is upgraded at the next login.
* Browser sessions: a random id, stored only as its SHA-256; the cookie carries the id signed with
  itsdangerous (HttpOnly, SameSite=Lax, Secure over https). A new id at every login (no fixation); idle
  and absolute expiry. Each session has its own CSRF token, required on every state-changing request
  made with the cookie (form field `csrf_token` or header `X-CSRF-Token`).
* Scripts: `Authorization: Bearer <token>` (from POST /api/login or `clinreason users token`), stored only
  as its SHA-256; bearer requests are exempt from CSRF (a browser never attaches them by itself).
* Login attempts are recorded; too many failures per user name or per client in a window give 429.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Request
from sqlalchemy import Connection

from clinreason.domain.accounts import Credential, User
from clinreason.domain.messages import N_, Params, Translatable, fill
from clinreason.store import accounts
from clinreason.store import db as store_db
from clinreason.store.common import now
from clinreason.store.decisions import add_event
from clinreason.web import i18n

ROLES = ("reviewer", "adjudicator", "admin")
Role = Literal["reviewer", "adjudicator", "admin"]
#: a user name: 1-100 ASCII letters, digits or . _ - @ (the OpenAPI document gives the same pattern)
USERNAME_PATTERN = r"^[A-Za-z0-9._@-]+$"
MAX_USERNAME = 100
MAX_SPECIALTY = 200
SESSION_COOKIE = "clinreason_session"
LOGIN_CSRF_COOKIE = "clinreason_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MIN_PASSWORD = 8


#: the languages of the review app (web/i18n.py)
LANGUAGES = ("en", "zh")


@dataclass
class AuthConfig:
    secret_key: str
    session_hours: float = 12.0  # absolute lifetime of a browser session
    idle_minutes: float = 120.0  # a session unused this long expires
    login_token_hours: float = 12.0  # lifetime of a token from POST /api/login
    max_failures_per_user: int = 5
    max_failures_per_client: int = 30
    failure_window_minutes: float = 15.0
    secure_cookies: bool | None = None  # None: Secure exactly when the request came over https


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: str
    specialties: tuple[str, ...]
    project_id: int
    project: str
    via: str  # "session" | "token"
    credential: str  # sha256 of the session id or token
    csrf_token: str | None = field(default=None, repr=False)
    language: str | None = None  # the user's own setting (en | zh), None: the browser's

    @property
    def actor(self) -> str:
        return f"user:{self.username}"


# --- errors the app turns into responses ----------------------------------------------------------

# Their messages are marked templates with values (domain/messages.py): the app answers in the request's
# language (web/i18n.py translate_message); str(exc) and .message stay English.

class NotAuthenticated(Translatable):
    """401 (API) or a redirect to /login (pages)."""


class Forbidden(Translatable):
    """403: signed in, but this role may not do this (or the CSRF token is missing/wrong)."""


class LoginThrottled(Translatable):
    def __init__(self, retry_after: int):
        super().__init__(N_("too many failed sign-ins: try again in {seconds} seconds"), {"seconds": retry_after})
        self.retry_after = retry_after


class AccountError(ValueError):
    def __init__(self, field_name: str, message: str, params: Params = None):
        self.template, self.params = message, (dict(params) if params is not None else None)
        self.message = fill(message, params)
        super().__init__(f"{field_name}: {self.message}")
        self.field = field_name


class UsernameTaken(AccountError):
    """409: the user name is someone's already."""


# --- passwords and users --------------------------------------------------------------------------

_hasher = None
_DUMMY_HASH: str | None = None


def _ph():
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


def hash_password(password: str) -> str:
    return _ph().hash(password)


def verify_password(stored_hash: str, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        _ph().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, _ph().check_needs_rehash(stored_hash)


def _burn_time(password: str) -> None:
    """Same cost as a real check, so a missing user name cannot be told apart by timing."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    verify_password(_DUMMY_HASH, password)


def validate_account(*, username: str, role: str, specialties: list[str], password: str | None) -> None:
    if not (0 < len(username) <= MAX_USERNAME and re.fullmatch(USERNAME_PATTERN[1:-1], username)):
        raise AccountError("username", N_("1-100 letters, digits or . _ - @"))
    if role not in ROLES:
        raise AccountError("role", N_("expected one of {choices}, got {value!r}"),
                           {"choices": ", ".join(ROLES), "value": role})
    if any(not isinstance(s, str) or not s.strip() or len(s) > MAX_SPECIALTY for s in specialties):
        raise AccountError("specialties", N_("each specialty must be non-empty text of at most 200 characters"))
    if password is not None and len(password) < MIN_PASSWORD:
        raise AccountError("password", N_("at least {n} characters"), {"n": MIN_PASSWORD})


def create_user(conn: Connection, *, username: str, role: str, password: str, specialties: list[str] | None = None,
                actor: str = "cli", project_id: int | None = None, password_hash: str | None = None,
                language: str | None = None) -> int:
    specialties = [s.strip() for s in (specialties or [])]
    validate_account(username=username, role=role, specialties=specialties, password=None if password_hash else password)
    if language is not None and language not in LANGUAGES:
        raise AccountError("language", N_("expected one of {choices}, got {value!r}"),
                           {"choices": ", ".join(LANGUAGES), "value": language})
    if accounts.get_user(conn, username=username) is not None:
        raise UsernameTaken("username", N_("a user named '{username}' already exists"), {"username": username})
    uid = accounts.add_user(conn, username=username, role=role, specialties=specialties,
                            password_hash=password_hash or hash_password(password), language=language)
    if project_id is not None:
        add_event(conn, project_id=project_id, kind="user.created", actor=actor,
                  after={"username": username, "role": role, "specialties": specialties})
    return uid


def set_language(conn: Connection, *, user_id: int, language: str | None) -> None:
    """A user's own choice of language for the review app (None: follow the browser)."""
    if language is not None and language not in LANGUAGES:
        raise AccountError("language", N_("expected one of {choices}, got {value!r}"),
                           {"choices": ", ".join(LANGUAGES), "value": language})
    accounts.set_language(conn, user_id=user_id, language=language)


def get_user(conn: Connection, *, username: str) -> User | None:
    return accounts.get_user(conn, username=username)


def list_users(conn: Connection) -> list[User]:
    return accounts.list_users(conn)


# --- secrets, tokens, sessions --------------------------------------------------------------------

def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def ensure_secret(conn: Connection, name: str = "cookie_key") -> str:
    """A signing key kept in the database, so every process serving it signs alike."""
    return accounts.ensure_secret(conn, name=name, new_value=secrets.token_urlsafe(48))


def create_token(conn: Connection, *, user_id: int, project_id: int, kind: str, name: str = "",
                 expires_at: datetime | None = None) -> str:
    token = "cr_" + secrets.token_urlsafe(32)
    accounts.add_token(conn, token_hash=digest(token), user_id=user_id, project_id=project_id, kind=kind, name=name,
                       expires_at=expires_at)
    return token


def revoke_token(conn: Connection, *, token_hash: str) -> None:
    accounts.revoke_token(conn, token_hash=token_hash)


def create_session(conn: Connection, *, user_id: int, project_id: int, cfg: AuthConfig,
                   replaces: str | None = None) -> tuple[str, str]:
    """A fresh session id (and CSRF token); the session it replaces, if any, is deleted (no fixation)."""
    if replaces:
        accounts.delete_session(conn, id_hash=digest(replaces))
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    ts = now()
    accounts.add_session(conn, id_hash=digest(session_id), user_id=user_id, project_id=project_id, csrf_token=csrf,
                         expires_at=ts + timedelta(hours=cfg.session_hours), at=ts)
    return session_id, csrf


def end_session(conn: Connection, *, id_hash: str) -> None:
    accounts.delete_session(conn, id_hash=id_hash)


def switch_project(conn: Connection, principal: Principal, *, project_id: int) -> None:
    if principal.via == "session":
        accounts.set_session_project(conn, id_hash=principal.credential, project_id=project_id)
    else:
        accounts.set_token_project(conn, token_hash=principal.credential, project_id=project_id)


def _principal_from(cred: Credential, *, via: str, credential: str) -> Principal:
    return Principal(user_id=cred.user_id, username=cred.username, role=cred.role,
                     specialties=tuple(cred.specialties), project_id=cred.project_id, project=cred.project,
                     via=via, credential=credential, csrf_token=cred.csrf_token, language=cred.language)


def principal_from_token(conn: Connection, token: str) -> Principal | None:
    h = digest(token)
    cred = accounts.token_credential(conn, token_hash=h)
    ts = now()
    if cred is None or cred.revoked_at is not None or not cred.active:
        return None
    if cred.expires_at is not None and cred.expires_at <= ts:
        return None
    return _principal_from(cred, via="token", credential=h)


def principal_from_session(conn: Connection, session_id: str, cfg: AuthConfig) -> Principal | None:
    h = digest(session_id)
    cred = accounts.session_credential(conn, id_hash=h)
    ts = now()
    if cred is None or not cred.active:
        return None
    assert cred.expires_at is not None and cred.last_seen_at is not None  # both NOT NULL for sessions
    if cred.expires_at <= ts or cred.last_seen_at + timedelta(minutes=cfg.idle_minutes) <= ts:
        end_session(conn, id_hash=h)
        return None
    if ts - cred.last_seen_at > timedelta(minutes=1):
        accounts.touch_session(conn, id_hash=h, at=ts)
    return _principal_from(cred, via="session", credential=h)


# --- login ----------------------------------------------------------------------------------------

def check_login(conn: Connection, *, username: str, password: str, client: str, cfg: AuthConfig) -> User | None:
    """The User when the password is right, None when not; LoginThrottled when this name or client
    failed too often lately. Every attempt is recorded (the caller commits even on failure)."""
    ts = now()
    since = ts - timedelta(minutes=cfg.failure_window_minutes)
    last_ok = accounts.last_login_success(conn, username=username)
    start = max(since, last_ok) if last_ok else since
    by_user = accounts.failed_logins(conn, username=username, since=start)
    by_client = accounts.failed_logins(conn, client=client, since=since)
    for (count, first), limit in ((by_user, cfg.max_failures_per_user), (by_client, cfg.max_failures_per_client)):
        if count >= limit and first is not None:
            wait = first + timedelta(minutes=cfg.failure_window_minutes) - ts
            raise LoginThrottled(max(1, int(wait.total_seconds()) + 1))
    user = accounts.get_user(conn, username=username[:100])
    stored = accounts.password_hash(conn, user_id=user.id) if user is not None and user.active else None
    if user is None or stored is None:
        _burn_time(password)
        ok = False
    else:
        ok, rehash = verify_password(stored, password)
        if ok and rehash:
            accounts.set_password_hash(conn, user_id=user.id, password_hash=hash_password(password))
    accounts.record_login_attempt(conn, username=username[:100], client=client[:100], succeeded=ok, at=ts)
    return user if ok else None


# --- request -> principal (FastAPI dependencies) --------------------------------------------------

def _signer(cfg: AuthConfig, salt: str):
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(cfg.secret_key, salt=salt)


def sign_session(cfg: AuthConfig, session_id: str) -> str:
    return _signer(cfg, "clinreason.session").dumps(session_id)


def unsign_session(cfg: AuthConfig, cookie: str) -> str | None:
    from itsdangerous import BadSignature

    try:
        return _signer(cfg, "clinreason.session").loads(cookie, max_age=int(cfg.session_hours * 3600))
    except BadSignature:
        return None


def sign_login_csrf(cfg: AuthConfig, token: str) -> str:
    return _signer(cfg, "clinreason.login").dumps(token)


def check_login_csrf(cfg: AuthConfig, cookie: str | None, token: str | None) -> bool:
    from itsdangerous import BadSignature

    if not cookie or not token:
        return False
    try:
        expected = _signer(cfg, "clinreason.login").loads(cookie, max_age=3600)
    except BadSignature:
        return False
    return hmac.compare_digest(str(expected), token)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: Request) -> Principal | None:
    web = request.app.state.web
    token = bearer_token(request)
    if token is not None:  # a lookup that writes nothing: no write turn (SQLite has one writer at a time)
        with store_db.reading(web.engine) as conn:
            return principal_from_token(conn, token)
    with web.transaction() as conn:
        cookie = request.cookies.get(SESSION_COOKIE)
        session_id = unsign_session(web.auth, cookie) if cookie else None
        return principal_from_session(conn, session_id, web.auth) if session_id else None


def current_principal(request: Request) -> Principal:
    principal = authenticate(request)
    if principal is None:
        raise NotAuthenticated()
    request.state.principal = principal
    return principal


async def csrf_checked(request: Request, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """State-changing requests made with the session cookie must carry the session's CSRF token."""
    if request.method in SAFE_METHODS or principal.via == "token":
        return principal
    sent: object = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get(CSRF_FIELD)
    if not isinstance(sent, str) or not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
        raise Forbidden(N_("missing or wrong CSRF token: reload the page and try again"))
    return principal


def _wrong_role(roles: tuple[str, ...], role: str) -> Forbidden:
    if len(roles) == 1:
        return Forbidden(N_("this needs the {needed} role; you are signed in as {role}"), {"needed": roles[0], "role": role})
    if len(roles) == 2:
        return Forbidden(N_("this needs the {first} or {second} role; you are signed in as {role}"),
                         {"first": roles[0], "second": roles[1], "role": role})
    return Forbidden(N_("this needs one of the roles {roles}; you are signed in as {role}"),
                     {"roles": ", ".join(roles), "role": role})


def require(*roles: str):
    """Dependency: signed in (session or bearer token), CSRF-checked, and holding one of `roles` (any if none)."""

    async def dependency(request: Request, principal: Annotated[Principal, Depends(csrf_checked)]) -> Principal:
        i18n.use(i18n.for_request(request, principal.language))  # the user's own language from here on
        if roles and principal.role not in roles:
            raise _wrong_role(roles, principal.role)
        return principal

    dependency.required_roles = roles  # type: ignore[attr-defined]  # read by web/schemas.py (the document)
    return dependency


AnyUser = Annotated[Principal, Depends(require())]
ReviewerUser = Annotated[Principal, Depends(require("reviewer"))]
SeniorUser = Annotated[Principal, Depends(require("adjudicator", "admin"))]
AdminUser = Annotated[Principal, Depends(require("admin"))]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
