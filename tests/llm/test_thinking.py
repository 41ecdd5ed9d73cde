"""split_thinking: the stored rationale is the answer, the model's private thinking is kept beside it."""

from __future__ import annotations

import pytest

from clinreason.llm.thinking import split_thinking


def test_plain_text_has_no_reasoning() -> None:
    assert split_thinking("Step 1: x\nFinal answer: A") == ("Step 1: x\nFinal answer: A", None)


@pytest.mark.parametrize("empty", ["", None])
def test_empty_text(empty: str | None) -> None:
    assert split_thinking(empty) == ("", None)


def test_think_block_moves_to_reasoning() -> None:
    answer, reasoning = split_thinking("<think>\nmicrocytic → iron\n</think>\n\nFinal answer: A")
    assert answer == "Final answer: A"
    assert reasoning == "microcytic → iron"


def test_several_blocks_are_joined_in_order() -> None:
    answer, reasoning = split_thinking("<think>one</think>Step 1.<THINK>two</Think>\nFinal answer: B")
    assert answer == "Step 1.\nFinal answer: B"
    assert reasoning == "one\n\ntwo"


def test_orphan_closing_tag_means_the_template_opened_the_block() -> None:
    answer, reasoning = split_thinking("the patient is young…\n</think>\nFinal answer: C")
    assert (answer, reasoning) == ("Final answer: C", "the patient is young…")


def test_unclosed_think_at_start_is_all_reasoning() -> None:
    # generation hit max_tokens mid-thought: there is no answer yet, and half a thought is not one
    assert split_thinking("<think>considering option A, then B") == ("", "considering option A, then B")


def test_unclosed_think_after_an_answer_keeps_the_answer() -> None:
    assert split_thinking("Final answer: D\n<think>on second thoughts") == ("Final answer: D",
                                                                             "on second thoughts")


def test_empty_think_block_gives_no_reasoning() -> None:
    assert split_thinking("<think>\n\n</think>Final answer: A") == ("Final answer: A", None)
