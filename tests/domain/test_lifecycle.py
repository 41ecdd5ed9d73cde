import itertools

import pytest

from clinreason.domain.lifecycle import (
    TERMINAL_STATES,
    TRANSITIONS,
    ItemState,
    TransitionError,
    allowed_targets,
    check_transition,
)

ALL_PAIRS = list(itertools.product(ItemState, ItemState))


@pytest.mark.parametrize("current,target", [p for p in ALL_PAIRS if p in TRANSITIONS],
                         ids=lambda s: s.value)
def test_every_allowed_transition_is_accepted_with_its_reason(current, target):
    assert check_transition(current, target) == TRANSITIONS[(current, target)]
    assert check_transition(current.value, target.value)  # plain strings from the database work too


@pytest.mark.parametrize("current,target", [p for p in ALL_PAIRS if p not in TRANSITIONS],
                         ids=lambda s: s.value)
def test_every_other_transition_is_refused_with_a_clear_error(current, target):
    with pytest.raises(TransitionError) as err:
        check_transition(current, target)
    message = str(err.value)
    assert f"'{current.value}'" in message and f"'{target.value}'" in message
    assert "allowed from" in message


def test_the_design_loop_is_in_the_table():
    s = ItemState
    path = [s.IMPORTED, s.GENERATING, s.SCREENING, s.IN_REVIEW, s.ACCEPTED]
    for a, b in zip(path, path[1:]):
        check_transition(a, b)
    for loop in [(s.SCREENING, s.REGENERATING), (s.REGENERATING, s.SCREENING), (s.IN_REVIEW, s.REGENERATING),
                 (s.IN_REVIEW, s.IN_REVIEW), (s.IN_REVIEW, s.ESCALATED), (s.ESCALATED, s.ACCEPTED),
                 (s.ESCALATED, s.EXCLUDED), (s.IMPORTED, s.ESCALATED), (s.FAILED, s.GENERATING)]:
        check_transition(*loop)


def test_final_states_have_no_way_out():
    for state in TERMINAL_STATES:
        assert allowed_targets(state) == []
        with pytest.raises(TransitionError, match="final state"):
            check_transition(state, ItemState.IN_REVIEW)


def test_every_state_is_reachable_from_imported():
    reached, frontier = {ItemState.IMPORTED}, [ItemState.IMPORTED]
    while frontier:
        for nxt in allowed_targets(frontier.pop()):
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(ItemState)


def test_unknown_state_names_are_refused():
    with pytest.raises(ValueError, match="unknown item state 'reviewed'"):
        check_transition("reviewed", "accepted")


def test_the_privacy_hold_loop_is_in_the_table():
    """Every state an LLM request is made from can be held; a held item resumes where its request was
    made, or is excluded; nothing else leaves `held` (not review, not acceptance)."""
    from clinreason.domain.lifecycle import RESUME_AFTER_HOLD

    s = ItemState
    for asking in (s.GENERATING, s.REGENERATING, s.SCREENING):
        check_transition(asking, s.HELD)
        check_transition(s.HELD, RESUME_AFTER_HOLD[asking])
    assert set(allowed_targets(s.HELD)) == {s.IMPORTED, s.REGENERATING, s.SCREENING, s.EXCLUDED}
    assert {f for (f, t) in TRANSITIONS if t is s.HELD} == set(RESUME_AFTER_HOLD)
    for never in (s.IN_REVIEW, s.ACCEPTED, s.GENERATING, s.ESCALATED, s.CALIBRATION, s.FAILED):
        with pytest.raises(TransitionError, match="'held'"):
            check_transition(s.HELD, never)
    with pytest.raises(TransitionError):
        check_transition(s.IMPORTED, s.HELD)  # a hold is about a request: an imported item has none yet


def test_a_held_and_released_item_replays():
    from clinreason.domain.lifecycle import replay

    def move(a, b):
        return {"kind": "item.transition", "before": {"state": a}, "after": {"state": b}}

    log = [{"kind": "item.imported"}, move("imported", "generating"), move("generating", "held"),
           {"kind": "privacy.released"}, move("held", "imported"), move("imported", "generating"),
           move("generating", "screening")]
    assert replay(log) is ItemState.SCREENING
    with pytest.raises(TransitionError):
        replay([{"kind": "item.imported"}, move("imported", "generating"), move("generating", "held"),
                move("held", "in_review")])
