"""The people who use the review app and what a stored credential unlocks. Plain typed data: the store
reads and writes them (store/accounts.py), the web app turns a Credential into a signed-in principal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from clinreason.domain.records import Record


@dataclass(slots=True)
class User(Record):
    """One account (a row of `users`, without its password hash)."""

    id: int
    username: str
    role: str  # reviewer | adjudicator | admin
    specialties: list[str] = field(default_factory=list)
    active: bool = True
    created_at: datetime | None = None
    language: str | None = None  # en | zh; None: the browser's choice


@dataclass(slots=True)
class Credential(Record):
    """A browser session or an API token as stored, joined with its user and project: what the web app
    checks (expiry, revocation, an inactive user) before it lets the request in."""

    user_id: int
    username: str
    role: str
    specialties: list[str]
    active: bool
    project_id: int
    project: str
    language: str | None = None
    expires_at: datetime | None = None
    #: tokens only
    revoked_at: datetime | None = None
    #: sessions only
    last_seen_at: datetime | None = None
    csrf_token: str | None = field(default=None, repr=False)
