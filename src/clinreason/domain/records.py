"""The records that accumulate around an item: the item itself, rationale versions, checks, reviews,
assignments, decisions and the append-only event log. Plain typed data: the store reads and writes
them (store/), stages and the web app receive them; nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from clinreason.domain.steps import StepMark


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


class Record:
    """Shared helpers of the record dataclasses."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The record's fields as a flat dict (values shared, not copied: records are plain data)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(slots=True)
class Item(Record):
    """One question of a project (a row of `items`)."""

    id: str
    project_id: int
    question: str
    options: list[tuple[str, str]]
    answer_labels: list[str]
    language: str
    state: str
    answer_text: str | None = None
    specialty: str | None = None
    context: str | None = None
    reference_explanation: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    strikes: int = 0
    auto_retries: int = 0
    flag_reason: str | None = None
    fail_reason: str | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: set by a claim: the number the next rationale version of this item will carry
    next_version: int = 1

    @property
    def option_labels(self) -> list[str]:
        return [label for label, _text in self.options]

    @property
    def gold(self) -> str:
        """The gold answer as one string: its labels, else its free text."""
        return ", ".join(self.answer_labels) if self.answer_labels else (self.answer_text or "")


@dataclass(slots=True)
class RationaleVersion(Record):
    """One version of the chain of thought for an item. Never changed once stored: edits make new versions."""

    id: str
    item_id: str
    version: int
    origin: str
    author: str  # "model:<id>" or "user:<name>"
    steps: list[str]
    final_answer: list[str]
    text: str
    parent_version: int | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    prompt_hash: str | None = None
    seed: int | None = None
    raw_output: str | None = None
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_ms: float | None = None
    parse_status: str = "ok"
    parse_error: str | None = None
    idempotency_key: str | None = None
    fingerprint: int | None = None
    created_at: datetime | None = None


@dataclass(slots=True)
class Check(Record):
    rationale_id: str
    name: str
    passed: bool
    score: float | None = None
    detail: str = ""
    blocking: bool = False
    id: int | None = None
    created_at: datetime | None = None


@dataclass(slots=True)
class Review(Record):
    """One expert's judgment of one rationale version."""

    id: str
    rationale_id: str
    item_id: str
    reviewer_id: int
    verdict: str
    scores: dict[str, int]
    comments: dict[str, str] = field(default_factory=dict)
    edited_text: str | None = None
    seconds_spent: float | None = None
    rubric_version: int = 1
    assignment_id: str | None = None
    created_at: datetime | None = None
    #: the reviewer's marks on the version's steps, as stored (StepMark.to_dict); see `marks`
    steps: list[dict[str, Any]] = field(default_factory=list)
    #: the reviewer's username and the reviewed version's number, when the query joined them
    reviewer: str | None = None
    version: int | None = None

    @property
    def marks(self) -> list[StepMark]:
        return [StepMark.from_dict(m) for m in self.steps]


@dataclass(slots=True)
class Assignment(Record):
    """A reviewer's lease on one rationale version."""

    id: str
    rationale_id: str
    item_id: str
    reviewer_id: int
    status: str  # open | submitted | expired | released
    created_at: datetime
    expires_at: datetime
    submitted_at: datetime | None = None
    project_id: int | None = None


@dataclass(slots=True)
class Decision(Record):
    """How an item ended."""

    item_id: str
    kind: str  # consensus | adjudication | excluded
    rationale_id: str | None
    decided_by: str
    reason: str = ""
    created_at: datetime | None = None
    id: int | None = None


@dataclass(slots=True)
class Event(Record):
    """An append-only audit record of one state change."""

    kind: str
    actor: str
    project_id: int | None = None
    item_id: str | None = None
    before: Any = None
    after: Any = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    id: int | None = None
