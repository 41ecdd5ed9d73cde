"""The domain objects that accumulate around an item: rationale versions, checks, reviews, assignments,
decisions and the append-only event log. Plain data; the store persists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Origin(StrEnum):
    GENERATED = "generated"
    REGENERATED = "regenerated"
    EDITED = "edited"
    ADJUDICATED = "adjudicated"


class Verdict(StrEnum):
    ACCEPT = "accept"
    EDIT = "edit"
    REGENERATE = "regenerate"
    FLAG_QUESTION = "flag_question"


class DecisionKind(StrEnum):
    CONSENSUS = "consensus"
    ADJUDICATION = "adjudication"
    EXCLUDED = "excluded"


@dataclass(slots=True)
class Rationale:
    """One version of the chain of thought for an item. Never changed once stored: edits make new versions."""

    item_id: str
    version: int
    steps: list[str]
    final_answer: list[str]
    text: str
    origin: Origin
    author: str  # "model:<id>" or "user:<name>"
    parent_version: int | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    prompt_hash: str | None = None
    raw_output: str | None = None
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    parse_status: str = "ok"
    id: str = ""


@dataclass(slots=True)
class Check:
    rationale_id: str
    name: str
    passed: bool
    score: float | None = None
    detail: str = ""
    blocking: bool = False


@dataclass(slots=True)
class Review:
    rationale_id: str
    reviewer: str
    verdict: Verdict
    scores: dict[str, int]
    comments: dict[str, str] = field(default_factory=dict)
    edited_text: str | None = None
    seconds_spent: float | None = None
    rubric_version: int = 1
    id: str = ""


@dataclass(slots=True)
class Assignment:
    rationale_id: str
    reviewer: str
    expires_at: datetime
    status: str = "open"  # open | submitted | expired | released
    id: str = ""


@dataclass(slots=True)
class Decision:
    item_id: str
    kind: DecisionKind
    rationale_id: str | None
    decided_by: str
    reason: str = ""


@dataclass(slots=True)
class Event:
    """An append-only audit record of one state change."""

    kind: str
    actor: str
    item_id: str | None = None
    before: Any = None
    after: Any = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
