"""The item lifecycle as an explicit transition table.

    imported -> generating -> screening -> in_review -> accepted
    screening -> regenerating -> screening          (automatic check failed, retry with feedback)
    in_review -> regenerating                       (experts asked for guided regeneration)
    in_review -> in_review                          (an expert edited: new version, reviewed again)
    in_review -> escalated -> accepted | excluded   (strikes exhausted, disagreement, flagged question)
    in_review | escalated -> calibration -> in_review
                                                    (an admin marks a version of known truth; unmarks it)
    imported  -> escalated                          (no gold answer: flagged question at import)
    generating | regenerating | screening -> failed (backend error that exhausted retries)
    failed -> generating | regenerating             (retried by command)
    generating | regenerating | screening -> held   (the privacy scan found identifiers: nothing was sent)
    held -> imported | regenerating | screening     (an admin released or edited it: the request it was held
                                                     before goes out; stages/privacy.py names which)
    held -> excluded                                (an admin excluded it)

The store applies a transition with compare-and-set on the state the caller read, so a row that
moved meanwhile is refused instead of being moved twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from clinreason.domain.records import Event


class ItemState(StrEnum):
    IMPORTED = "imported"
    GENERATING = "generating"
    SCREENING = "screening"
    REGENERATING = "regenerating"
    IN_REVIEW = "in_review"
    ESCALATED = "escalated"
    ACCEPTED = "accepted"
    EXCLUDED = "excluded"
    FAILED = "failed"
    CALIBRATION = "calibration"  # a version of known truth, slipped into queues to measure reviewers
    HELD = "held"  # the privacy gate stopped an LLM request about it: waiting for an admin


S = ItemState

#: Every allowed move, and the reason it exists. Anything not listed is refused.
TRANSITIONS: dict[tuple[ItemState, ItemState], str] = {
    (S.IMPORTED, S.GENERATING): "draft requested",
    (S.IMPORTED, S.ESCALATED): "question flagged at import (e.g. no gold answer)",
    (S.GENERATING, S.SCREENING): "draft stored",
    (S.GENERATING, S.FAILED): "drafting failed after retries",
    (S.SCREENING, S.IN_REVIEW): "screening passed (or retries exhausted: sent to experts flagged)",
    (S.SCREENING, S.REGENERATING): "blocking check failed: regenerate with the failure as feedback",
    (S.SCREENING, S.FAILED): "screening failed after retries",
    (S.REGENERATING, S.SCREENING): "regenerated draft stored",
    (S.REGENERATING, S.FAILED): "regeneration failed after retries",
    (S.IN_REVIEW, S.IN_REVIEW): "an expert edited the rationale: the new version is reviewed again",
    (S.IN_REVIEW, S.ACCEPTED): "reviewers reached consensus",
    (S.IN_REVIEW, S.REGENERATING): "reviewers asked for guided regeneration",
    (S.IN_REVIEW, S.ESCALATED): "strikes exhausted, disagreement, or question flagged",
    (S.ESCALATED, S.ACCEPTED): "adjudicator accepted a version or wrote the final text",
    (S.ESCALATED, S.EXCLUDED): "adjudicator excluded the item",
    (S.FAILED, S.GENERATING): "retry requested",
    (S.FAILED, S.REGENERATING): "retry requested",
    (S.IN_REVIEW, S.CALIBRATION): "an admin marked a version of known truth as a calibration item",
    (S.ESCALATED, S.CALIBRATION): "an admin marked a version of known truth as a calibration item",
    (S.CALIBRATION, S.IN_REVIEW): "an admin withdrew the calibration item: it is reviewed as any other",
    (S.GENERATING, S.HELD): "the privacy scan found identifiers before drafting: nothing was sent",
    (S.REGENERATING, S.HELD): "the privacy scan found identifiers before regeneration: nothing was sent",
    (S.SCREENING, S.HELD): "the privacy scan found identifiers before the LLM judge: nothing was sent",
    (S.HELD, S.IMPORTED): "an admin released or edited the held item: it is drafted",
    (S.HELD, S.REGENERATING): "an admin released or edited the held item: it is regenerated",
    (S.HELD, S.SCREENING): "an admin released or edited the held item: it is screened",
    (S.HELD, S.EXCLUDED): "an admin excluded the held item",
}

#: where a held item resumes: the state its held request was made from (stages/privacy.py)
RESUME_AFTER_HOLD: dict[ItemState, ItemState] = {
    S.GENERATING: S.IMPORTED,
    S.REGENERATING: S.REGENERATING,
    S.SCREENING: S.SCREENING,
}

TERMINAL_STATES = frozenset({S.ACCEPTED, S.EXCLUDED})


class TransitionError(ValueError):
    """A move the lifecycle does not allow."""

    def __init__(self, current: str, target: str):
        self.current = current
        self.target = target
        allowed = sorted(t.value for (f, t) in TRANSITIONS if f.value == current)
        hint = ", ".join(allowed) if allowed else "none: it is a final state"
        super().__init__(f"an item in state '{current}' cannot move to '{target}' (allowed from '{current}': {hint})")


def parse_state(value: str) -> ItemState:
    try:
        return ItemState(value)
    except ValueError:
        known = ", ".join(s.value for s in ItemState)
        raise ValueError(f"unknown item state '{value}' (known: {known})") from None


def allowed_targets(current: ItemState | str) -> list[ItemState]:
    current = ItemState(current)
    return [t for (f, t) in TRANSITIONS if f is current]


def check_transition(current: ItemState | str, target: ItemState | str) -> str:
    """Return the reason for a legal move; raise TransitionError for any other."""
    cur, tgt = parse_state(str(current)), parse_state(str(target))
    try:
        return TRANSITIONS[(cur, tgt)]
    except KeyError:
        raise TransitionError(cur.value, tgt.value) from None


def replay(events: Sequence[Event | Mapping[str, Any]]) -> ItemState | None:
    """The state an item's event log leads to: every transition must start where the previous one
    ended and be allowed by the table. Raises ValueError on a log that does not replay. Takes Event
    records or their JSON form (the API's)."""
    state: ItemState | None = None
    for event in events:
        record = event if isinstance(event, Event) else Event(kind=str(event.get("kind")), actor="",
                                                               before=event.get("before"), after=event.get("after"))
        if record.kind == "item.imported":
            state = ItemState.IMPORTED
            continue
        if record.kind != "item.transition":
            continue
        before, after = ItemState(record.before["state"]), ItemState(record.after["state"])
        if state is not None and before is not state:
            raise ValueError(f"event log jumps: the item was '{state}', the next transition starts at '{before}'")
        check_transition(before, after)
        state = after
    return state
