"""Accounts and what the web app keeps about them: users, browser sessions, API tokens, signing secrets,
login attempts, and the few counts only the web pages read. Every function takes a Connection; the caller
owns the transaction. Hashing, expiry and throttling rules live in the web app (web/auth.py): this module
stores and reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from clinreason.domain.accounts import Credential, User
from clinreason.store.common import aware, insert_ignoring_duplicates, now
from clinreason.store.tables import (
    api_tokens,
    app_secrets,
    login_attempts,
    projects,
    users,
    web_sessions,
)

# --- users ----------------------------------------------------------------------------------------


def user_from_row(row: RowMapping | dict[str, Any]) -> User:
    return User(id=int(row["id"]), username=row["username"], role=row["role"],
                specialties=list(row["specialties"] or []), active=bool(row["active"]),
                created_at=aware(row["created_at"]), language=row["language"])


_USER_COLUMNS = (users.c.id, users.c.username, users.c.role, users.c.specialties, users.c.active, users.c.created_at,
                 users.c.language)


def add_user(conn: Connection, *, username: str, role: str, specialties: list[str], password_hash: str,
             active: bool = True, language: str | None = None) -> int:
    """Store a new account; returns its id (IntegrityError when the name is taken)."""
    result = conn.execute(insert(users).values(username=username, role=role, specialties=specialties,
                                               password_hash=password_hash, active=active, created_at=now(),
                                               language=language))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def get_user(conn: Connection, *, username: str) -> User | None:
    row = conn.execute(select(*_USER_COLUMNS).where(users.c.username == username)).mappings().first()
    return user_from_row(row) if row else None


def get_user_by_id(conn: Connection, *, user_id: int) -> User | None:
    row = conn.execute(select(*_USER_COLUMNS).where(users.c.id == user_id)).mappings().first()
    return user_from_row(row) if row else None


def list_users(conn: Connection) -> list[User]:
    """Every account, by user name."""
    return [user_from_row(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(users.c.username)).mappings()]


def set_language(conn: Connection, *, user_id: int, language: str | None) -> None:
    """The review app's language for this user (None: follow the browser)."""
    conn.execute(update(users).where(users.c.id == user_id).values(language=language))


def update_user(conn: Connection, *, user_id: int, active: bool | None = None, role: str | None = None,
                specialties: list[str] | None = None) -> None:
    """Change the given fields of an account (None leaves a field as it is)."""
    values: dict[str, Any] = {k: v for k, v in (("active", active), ("role", role), ("specialties", specialties))
                              if v is not None}
    if values:
        conn.execute(update(users).where(users.c.id == user_id).values(**values))


def set_active(conn: Connection, *, username: str, active: bool) -> bool:
    """Switch an account on or off by name; False when there is no such user."""
    result = conn.execute(update(users).where(users.c.username == username).values(active=active))
    return bool(result.rowcount)


def password_hash(conn: Connection, *, user_id: int) -> str | None:
    value = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar()
    return str(value) if value is not None else None


def set_password_hash(conn: Connection, *, user_id: int, password_hash: str) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


# --- secrets --------------------------------------------------------------------------------------


def get_secret(conn: Connection, *, name: str) -> str | None:
    value = conn.execute(select(app_secrets.c.value).where(app_secrets.c.name == name)).scalar()
    return str(value) if value else None


def ensure_secret(conn: Connection, *, name: str, new_value: str) -> str:
    """The stored secret `name`; stores `new_value` first when there is none (the first process wins, so
    every process serving the database reads the same value)."""
    value = get_secret(conn, name=name)
    if value:
        return value
    insert_ignoring_duplicates(conn, app_secrets, [{"name": name, "value": new_value, "created_at": now()}])
    return str(conn.execute(select(app_secrets.c.value).where(app_secrets.c.name == name)).scalar_one())


# --- API tokens -----------------------------------------------------------------------------------


def add_token(conn: Connection, *, token_hash: str, user_id: int, project_id: int, kind: str, name: str = "",
              expires_at: datetime | None = None) -> None:
    conn.execute(insert(api_tokens).values(token_hash=token_hash, user_id=user_id, project_id=project_id, kind=kind,
                                           name=name, created_at=now(), expires_at=expires_at))


def revoke_token(conn: Connection, *, token_hash: str) -> None:
    conn.execute(update(api_tokens).where(api_tokens.c.token_hash == token_hash).values(revoked_at=now()))


def set_token_project(conn: Connection, *, token_hash: str, project_id: int) -> None:
    conn.execute(update(api_tokens).where(api_tokens.c.token_hash == token_hash).values(project_id=project_id))


def _credential(row: RowMapping, **extra: Any) -> Credential:
    """What a token or a session row joined with its user and project unlocks."""
    return Credential(user_id=int(row["user_id"]), username=row["username"], role=row["role"],
                      specialties=list(row["specialties"] or []), active=bool(row["active"]),
                      project_id=int(row["project_id"]), project=row["project"], language=row["language"],
                      expires_at=aware(row["expires_at"]), **extra)


def token_credential(conn: Connection, *, token_hash: str) -> Credential | None:
    """The token with this hash, its user and project (whatever its expiry or revocation)."""
    row = conn.execute(
        select(api_tokens.c.user_id, api_tokens.c.project_id, api_tokens.c.expires_at, api_tokens.c.revoked_at,
               users.c.username, users.c.role, users.c.specialties, users.c.active, users.c.language,
               projects.c.name.label("project"))
        .join(users, users.c.id == api_tokens.c.user_id).join(projects, projects.c.id == api_tokens.c.project_id)
        .where(api_tokens.c.token_hash == token_hash)
    ).mappings().first()
    if row is None:
        return None
    return _credential(row, revoked_at=aware(row["revoked_at"]))


# --- browser sessions -----------------------------------------------------------------------------


def add_session(conn: Connection, *, id_hash: str, user_id: int, project_id: int, csrf_token: str,
                expires_at: datetime, at: datetime | None = None) -> None:
    ts = at or now()
    conn.execute(insert(web_sessions).values(id_hash=id_hash, user_id=user_id, project_id=project_id,
                                             csrf_token=csrf_token, created_at=ts, last_seen_at=ts,
                                             expires_at=expires_at))


def delete_session(conn: Connection, *, id_hash: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == id_hash))


def touch_session(conn: Connection, *, id_hash: str, at: datetime) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.id_hash == id_hash).values(last_seen_at=at))


def set_session_project(conn: Connection, *, id_hash: str, project_id: int) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.id_hash == id_hash).values(project_id=project_id))


def session_credential(conn: Connection, *, id_hash: str) -> Credential | None:
    """The session with this hash, its user and project (whatever its expiry)."""
    row = conn.execute(
        select(web_sessions.c.user_id, web_sessions.c.project_id, web_sessions.c.csrf_token,
               web_sessions.c.expires_at, web_sessions.c.last_seen_at, users.c.username, users.c.role,
               users.c.specialties, users.c.active, users.c.language, projects.c.name.label("project"))
        .join(users, users.c.id == web_sessions.c.user_id).join(projects, projects.c.id == web_sessions.c.project_id)
        .where(web_sessions.c.id_hash == id_hash)
    ).mappings().first()
    if row is None:
        return None
    return _credential(row, last_seen_at=aware(row["last_seen_at"]), csrf_token=row["csrf_token"])


# --- login attempts -------------------------------------------------------------------------------


def record_login_attempt(conn: Connection, *, username: str, client: str, succeeded: bool, at: datetime) -> None:
    conn.execute(insert(login_attempts).values(username=username, client=client, succeeded=succeeded, at=at))


def last_login_success(conn: Connection, *, username: str) -> datetime | None:
    value = conn.execute(select(func.max(login_attempts.c.at)).where(
        login_attempts.c.username == username, login_attempts.c.succeeded.is_(True))).scalar()
    return aware(value)


def failed_logins(conn: Connection, *, since: datetime, username: str | None = None,
                  client: str | None = None) -> tuple[int, datetime | None]:
    """(count, earliest) of the failed attempts after `since` for this user name and/or client."""
    query = select(func.count(), func.min(login_attempts.c.at)).where(
        login_attempts.c.succeeded.is_(False), login_attempts.c.at > since)
    if username is not None:
        query = query.where(login_attempts.c.username == username)
    if client is not None:
        query = query.where(login_attempts.c.client == client)
    count, first = conn.execute(query).one()
    return int(count), aware(first)
