"""Turning model output (or an expert's edited text) into a rationale: numbered steps and a final answer.

Pure functions. A parse failure is a value (ParseError with a reason), never a silent None, and the
raw text is always kept by the caller beside whatever was parsed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_FINAL = re.compile(
    r"^\s*(?:\*\*|#+\s*)?(?:final\s+answer|answer|最终答案|答案|正确答案)\s*(?:is)?\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*(.+?)\s*(?:\*\*)?\s*$",
    re.I | re.M,
)
_STEP = re.compile(r"^\s*(?:(?:step\s*)?(\d{1,2})\s*[\.\)、:：]|第\s*[一二三四五六七八九十\d]+\s*步\s*[:：]?|[-*•]\s+)\s*(.*)$", re.I)
_LABEL_RUN = re.compile(r"^[\(\[（]?\s*([A-Z](?:\s*(?:,|，|、|and|和|及|/)?\s*[A-Z])*)\s*[\)\]）]?(?![a-z])")


@dataclass(slots=True)
class ParsedRationale:
    steps: list[str]
    final_answer: list[str]
    text: str
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ParseError:
    reason: str
    steps: list[str] = field(default_factory=list)
    final_answer: list[str] = field(default_factory=list)
    text: str = ""

    def __bool__(self) -> bool:  # so `if result:` reads "parsed successfully"
        return False


def answer_labels(answer: str, options: dict[str, str]) -> list[str]:
    """Labels named by a final-answer string: 'B', 'A, C', 'AC', '(B) heparin', or an option's text."""
    answer = answer.strip().strip("*").strip()
    if not options:
        return []
    m = _LABEL_RUN.match(answer)
    if m:
        labels = sorted(set(re.findall(r"[A-Z]", m.group(1))))
        if labels and all(label in options for label in labels):
            return labels
    compact = re.sub(r"[\s,，、/]+", "", answer)
    if compact.isupper() and compact.isalpha() and all(ch in options for ch in compact):
        return sorted(set(compact))
    lowered = answer.lower().rstrip(".。")
    for label, text in options.items():
        if text.strip().lower().rstrip(".。") == lowered:
            return [label]
    for label, text in options.items():
        if len(text) > 3 and text.strip().lower().rstrip(".。") in lowered:
            return [label]
    return []


def parse_rationale(raw: str, options: dict[str, str]) -> ParsedRationale | ParseError:
    """Read steps and the final answer from free text or from a JSON object {steps, final_answer}."""
    text = (raw or "").strip()
    if not text:
        return ParseError("empty output")
    parsed_json = _try_json(text)
    if parsed_json is not None:
        steps, answer = parsed_json
        labels = answer_labels(answer, options) if options else []
        body = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)) + f"\nFinal answer: {answer}"
        if not steps:
            return ParseError("the JSON answer has no steps", final_answer=labels, text=body)
        if options and not labels:
            return ParseError(f"final answer {answer!r} names no option", steps=steps, text=body)
        return ParsedRationale(steps=steps, final_answer=labels, text=body)

    finals = list(_FINAL.finditer(text))
    body_text = text[: finals[-1].start()].rstrip() if finals else text
    steps = _steps(body_text)
    if not finals:
        return ParseError("no final answer line (expected 'Final answer: X')", steps=steps, text=text)
    answer = finals[-1].group(1)
    labels = answer_labels(answer, options) if options else []
    if options and not labels:
        return ParseError(f"final answer {answer.strip()!r} names no option", steps=steps, text=text)
    if not steps:
        return ParseError("no reasoning steps before the final answer", final_answer=labels, text=text)
    return ParsedRationale(steps=steps, final_answer=labels, text=text)


def _steps(body: str) -> list[str]:
    """Numbered (or bulleted) steps; a continuation line joins the step above it. Unnumbered text
    falls back to paragraphs."""
    steps: list[str] = []
    numbered = False
    for line in body.splitlines():
        if not line.strip():
            continue
        m = _STEP.match(line)
        if m:
            numbered = True
            content = (m.group(2) or "").strip()
            steps.append(content or line.strip())
        elif numbered and steps:
            steps[-1] = f"{steps[-1]} {line.strip()}"
    if numbered:
        return [s for s in steps if s]
    return [p.strip().replace("\n", " ") for p in re.split(r"\n\s*\n", body) if p.strip()]


def _try_json(text: str) -> tuple[list[str], str] | None:
    candidate = text
    fence = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.S)
    if fence:
        candidate = fence.group(1)
    if not candidate.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(candidate)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or "final_answer" not in obj:
        return None
    steps = obj.get("steps") or []
    if not isinstance(steps, list):
        steps = [str(steps)]
    answer = obj["final_answer"]
    if isinstance(answer, list):
        answer = ", ".join(str(a) for a in answer)
    return [str(s).strip() for s in steps if str(s).strip()], str(answer)


def rationale_schema(
    options: dict[str, str] | list[Any], *, max_steps: int = 8, max_step_chars: int = 400
) -> dict[str, Any]:
    """A JSON schema for one rationale: bounded steps (so a grammar-constrained model always finishes)
    and, for a multiple-choice item, a final answer that is one of its labels or a combination."""
    labels = [o[0] for o in options] if isinstance(options, list) else list(options)
    answer: dict[str, Any] = {"type": "string", "maxLength": 100}
    if labels:
        answer = {"type": "string", "pattern": "^[" + "".join(labels) + "](, ?[" + "".join(labels) + "])*$",
                  "maxLength": 3 * len(labels)}
    return {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "minItems": 2, "maxItems": max_steps,
                      "items": {"type": "string", "minLength": 10, "maxLength": max_step_chars}},
            "final_answer": answer,
        },
        "required": ["steps", "final_answer"],
        "additionalProperties": False,
    }


RATIONALE_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "steps": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "final_answer": {"type": "string"},
    },
    "required": ["steps", "final_answer"],
    "additionalProperties": False,
}


_EXPERT_FINAL = re.compile(r"^\W*(?:final answer|answer|最终答案|答案)\W*[:：]\s*(?P<value>.+?)\s*$", re.IGNORECASE)


def parse_expert_text(text: str, *, option_labels: list[str], fallback: list[str]) -> tuple[list[str], list[str]]:
    """An expert's text: steps = the non-empty lines; final answer = the labels on a closing
    'Final answer: X' line (or its text for open questions), else `fallback`."""
    steps = [line.strip() for line in text.splitlines() if line.strip()]
    if steps:
        match = _EXPERT_FINAL.match(steps[-1])
        if match:
            value = match.group("value").strip("*_ .")
            if option_labels:
                tokens = re.findall(r"[A-Za-z0-9]+", value)
                wanted = {lb.upper() for lb in option_labels}
                labels = sorted({t.upper() for t in tokens if t.upper() in wanted})
                if labels:
                    return steps, labels
            elif value:
                return steps, [value]
    return steps, list(fallback)
