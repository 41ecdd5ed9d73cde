"""Separate a reasoning model's private "thinking" from the answer it gives.

Reasoning models (DeepSeek-R1 and its distillations, QwQ, Qwen3 …) served by engines that do not split
the reasoning out themselves put it inline as ``<think>…</think>`` before the answer. The rationale we
store must be the answer, while the thinking is kept beside it (it is useful evidence for reviewers),
so every backend runs its text through :func:`split_thinking`.
"""

from __future__ import annotations

import re

_OPEN = re.compile(r"<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_BLOCK = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)


def split_thinking(text: str | None) -> tuple[str, str | None]:
    """Return ``(answer_text, reasoning)``; ``reasoning`` is None when the text holds no thinking.

    Handles the shapes seen in the wild:

    * ``<think>r</think>answer`` — the common case; several blocks are joined with a blank line;
    * ``r</think>answer`` — an orphan closing tag: the chat template opened ``<think>`` in the prompt
      (DeepSeek-R1 distills do this), so everything before the tag is thinking;
    * ``<think>r`` with no closing tag — generation stopped (``max_tokens``) while still thinking:
      all of it is thinking and the answer is empty, which the parse stage then reports as such,
      rather than mistaking half a thought for a rationale.
    """
    if not text:
        return "", None
    thoughts: list[str] = []
    rest = text

    leading_close = _CLOSE.search(rest)
    leading_open = _OPEN.search(rest)
    if leading_close and (leading_open is None or leading_close.start() < leading_open.start()):
        thoughts.append(rest[: leading_close.start()])
        rest = rest[leading_close.end():]

    def keep(match: re.Match[str]) -> str:
        thoughts.append(match.group(1))
        return ""

    rest = _BLOCK.sub(keep, rest)

    unclosed = _OPEN.search(rest)
    if unclosed is not None:
        thoughts.append(rest[unclosed.end():])
        rest = rest[: unclosed.start()]

    cleaned = [thought.strip() for thought in thoughts if thought.strip()]
    reasoning = "\n\n".join(cleaned) if cleaned else None
    if not thoughts:
        return text.strip(), None
    return rest.strip(), reasoning
