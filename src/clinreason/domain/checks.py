"""Automatic screening checks: pure functions of an item and one rationale version.

Each returns a CheckResult. Which checks block (send the draft back for automatic regeneration) is
project configuration; the defaults are in `DEFAULT_BLOCKING`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from clinreason.domain.items import detect_language
from clinreason.domain.records import Item, RationaleVersion
from clinreason.domain.steps import unrevised_marked_steps

DEFAULT_BLOCKING = frozenset({"parse", "answer_matches_gold", "length", "answer_leakage", "language"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class ScreenBounds:
    min_steps: int = 2
    max_steps: int = 20
    min_chars: int = 80
    max_chars: int = 8000


# --- individual checks ----------------------------------------------------------------------------

def check_parse(parse_status: str, parse_error: str | None) -> CheckResult:
    if parse_status == "ok":
        return CheckResult("parse", True, "steps and a final answer were found")
    return CheckResult("parse", False, f"the output could not be read as a rationale: {parse_error or parse_status}")


def check_answer_matches_gold(final_answer: list[str], gold: list[str], *, mode: str) -> CheckResult:
    if not gold:
        return CheckResult("answer_matches_gold", True, "not applicable: the item has no gold option labels")
    if sorted(final_answer) == sorted(gold):
        return CheckResult("answer_matches_gold", True, f"final answer {', '.join(gold)} equals the gold answer", 1.0)
    said = ", ".join(final_answer) or "nothing"
    if mode == "solve":
        detail = (f"answered blind, the model chose {said} but the gold answer is {', '.join(gold)}: "
                  "either the draft or the gold answer is wrong — worth an expert's look")
    else:
        detail = f"the rationale concludes {said} but the gold answer is {', '.join(gold)}"
    return CheckResult("answer_matches_gold", False, detail, 0.0)


def _mentions(label: str, option_text: str, text: str) -> bool:
    patterns = [
        rf"(?<![A-Za-z]){re.escape(label)}(?![A-Za-z])",  # A, (A), A., 选项A, A项
    ]
    if any(re.search(p, text) for p in patterns):
        return True
    core = option_text.strip().rstrip(".。").lower()
    return len(core) >= 4 and core in text.lower()


def check_options_addressed(options: dict[str, str], text: str) -> CheckResult:
    if not options:
        return CheckResult("options_addressed", True, "not applicable: open question")
    missing = [label for label, opt in options.items() if not _mentions(label, opt, text)]
    share = 1 - len(missing) / len(options)
    if missing:
        return CheckResult("options_addressed", False, f"option(s) {', '.join(missing)} are never discussed", share)
    return CheckResult("options_addressed", True, f"all {len(options)} options are discussed", 1.0)


def check_length(steps: list[str], text: str, bounds: ScreenBounds) -> CheckResult:
    n, chars = len(steps), len(text)
    problems = []
    if n < bounds.min_steps:
        problems.append(f"{n} step(s), fewer than {bounds.min_steps}")
    if n > bounds.max_steps:
        problems.append(f"{n} steps, more than {bounds.max_steps}")
    if chars < bounds.min_chars:
        problems.append(f"{chars} characters, fewer than {bounds.min_chars}")
    if chars > bounds.max_chars:
        problems.append(f"{chars} characters, more than {bounds.max_chars}")
    if problems:
        return CheckResult("length", False, "; ".join(problems), float(n))
    return CheckResult("length", True, f"{n} steps, {chars} characters", float(n))


_LEAKAGE = [
    r"answer key", r"gold answer", r"(?:the )?(?:given|provided|stated) (?:correct )?answer", r"we are told the answer",
    r"(?:as|since) the (?:question|prompt) says the answer", r"correct answer (?:is )?(?:given|provided|marked)",
    r"reference explanation", r"标准答案", r"参考答案", r"答案已给出", r"题目给出的答案", r"根据答案", r"参考解析",
    r"题库解析",
]
_LEAKAGE_RE = re.compile("|".join(_LEAKAGE), re.I)


def check_answer_leakage(text: str) -> CheckResult:
    m = _LEAKAGE_RE.search(text)
    if m:
        start = max(m.start() - 30, 0)
        return CheckResult("answer_leakage", False,
                           f"the rationale leans on the answer key instead of the findings: “…{text[start:m.end() + 30].strip()}…”")
    return CheckResult("answer_leakage", True, "no reference to an answer key")


def check_language(item_language: str, text: str) -> CheckResult:
    found = detect_language(text)
    if found == item_language or item_language not in ("en", "zh"):
        return CheckResult("language", True, f"written in {found}, as the question")
    return CheckResult("language", False, f"written in {found} but the question is in {item_language}")


# --- near duplicates ------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]", re.I)


def simhash(text: str) -> int:
    """64-bit simhash over word (or CJK character) trigrams, as a signed integer (fits BIGINT)."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    grams = [" ".join(tokens[i:i + 3]) for i in range(max(len(tokens) - 2, 1))] if tokens else [""]
    bits = [format(int.from_bytes(hashlib.blake2b(g.encode("utf-8"), digest_size=8).digest(), "big"), "064b")
            for g in grams]
    half = len(bits) / 2
    # column j of the bit strings is bit 63-j of every hash: a bit is set when most hashes have it set
    value = int("".join("1" if "".join(col).count("1") > half else "0" for col in zip(*bits)), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


#: the 16-bit blocks a fingerprint is split into for look-ups: two fingerprints within 3 bits share one
FINGERPRINT_BLOCKS = 4


def fingerprint_blocks(fp: int) -> list[int]:
    """The four 16-bit blocks of a fingerprint, lowest first (of its unsigned 64-bit form: the same values
    as `(fp >> 16*i) & 65535` on the signed integer, in Python and in SQL)."""
    u = fp & ((1 << 64) - 1)
    return [(u >> (16 * i)) & 0xFFFF for i in range(FINGERPRINT_BLOCKS)]


class FingerprintIndex:
    """Latest rationale fingerprint per item, indexed for near-duplicate look-ups. Two fingerprints within
    3 bits agree exactly on at least one of their four 16-bit blocks (pigeonhole), so only items sharing a
    block are compared; wider distances fall back to a full scan."""

    def __init__(self) -> None:
        self.by_item: dict[str, int] = {}
        self._blocks: list[dict[int, set[str]]] = [{} for _ in range(4)]

    _split = staticmethod(fingerprint_blocks)

    def add(self, item_id: str, fp: int) -> None:
        old = self.by_item.get(item_id)
        if old is not None:
            for i, block in enumerate(self._split(old)):
                self._blocks[i].get(block, set()).discard(item_id)
        self.by_item[item_id] = fp
        for i, block in enumerate(self._split(fp)):
            self._blocks[i].setdefault(block, set()).add(item_id)

    def nearest(self, fp: int, *, exclude: str | None, max_distance: int) -> tuple[str | None, int]:
        if max_distance <= 3:
            candidates: set[str] = set()
            for i, block in enumerate(self._split(fp)):
                candidates |= self._blocks[i].get(block, set())
        else:
            candidates = set(self.by_item)
        candidates.discard(exclude)
        best_item, best = None, 65
        for other in candidates:
            d = hamming(fp, self.by_item[other])
            if d < best or (d == best and best_item is not None and other < best_item):
                best_item, best = other, d
        return best_item, best


class Neighbours(Protocol):
    """Where a near-duplicate check looks: a `FingerprintIndex` in memory, or the store's indexed look-up
    (`store.rationales.StoredNeighbours`)."""

    def nearest(self, fp: int, *, exclude: str | None, max_distance: int) -> tuple[str | None, int]: ...


def check_near_duplicate(fingerprint: int, index: Neighbours, *, item_id: str | None = None,
                         max_distance: int = 3) -> CheckResult:
    other, distance = index.nearest(fingerprint, exclude=item_id, max_distance=max_distance)
    if other is not None and distance <= max_distance:
        return CheckResult("near_duplicate", False,
                           f"nearly identical to the rationale of item {other} ({distance} of 64 bits differ)",
                           float(distance))
    return CheckResult("near_duplicate", True, "no near-identical rationale on another item")


# --- agreement with the bank's own explanation ----------------------------------------------------

_REF_LABEL = [
    re.compile(r"\bans(?:wer)?\s*(?:is|[-:.])?\s*[\(\[]?([a-e])\b[\)\]]?", re.I),  # MedMCQA "Ans. a", "Answer- B"
    re.compile(r"（\s*([A-E]+)\s*对\s*）"),  # CMExam "（C对）"
    re.compile(r"故选\s*([A-E]+)"),
]


def reference_labels(reference: str) -> list[str]:
    for pattern in _REF_LABEL:
        found = pattern.findall(reference)
        if found:
            return sorted({ch.upper() for group in found for ch in group})
    return []


def check_reference_agreement(final_answer: list[str], reference: str | None, text: str) -> CheckResult | None:
    if not reference:
        return None
    ref_tokens = set(_TOKEN.findall(reference.lower()))
    own = set(_TOKEN.findall(text.lower()))
    overlap = len(ref_tokens & own) / len(ref_tokens) if ref_tokens else 0.0
    labels = reference_labels(reference)
    if labels and final_answer and sorted(final_answer) != labels:
        return CheckResult("reference_agreement", False,
                           f"the bank's explanation points to {', '.join(labels)}, the draft to {', '.join(final_answer)}",
                           round(overlap, 3))
    return CheckResult("reference_agreement", True,
                       f"consistent with the bank's explanation ({overlap:.0%} of its terms used)", round(overlap, 3))


# --- all together ---------------------------------------------------------------------------------

def check_marked_steps_revised(marked: list[tuple[int, str]], steps: list[str], *,
                               parent_version: int | None) -> CheckResult:
    """Fails when a step reviewers marked `error` in the previous version reappears unchanged."""
    kept = unrevised_marked_steps(marked, steps)
    where = f"v{parent_version}" if parent_version is not None else "the previous version"
    if not kept:
        return CheckResult("marked_steps_revised", True,
                           f"every step marked as an error in {where} was revised ({len(marked)} marked)")
    quoted = "; ".join(f"step {n}: {text[:120]}" for n, text in marked if n in kept)
    return CheckResult("marked_steps_revised", False,
                       f"{len(kept)} of {len(marked)} step(s) marked as errors in {where} reappear unchanged "
                       f"({quoted})"[:1000])


def run_checks(*, item: Item, rationale: RationaleVersion, mode: str, bounds: ScreenBounds,
               index: Neighbours, compare_reference: bool, max_distance: int = 3,
               marked_steps: list[tuple[int, str]] | None = None) -> list[CheckResult]:
    """Every automatic check of one version. `marked_steps`: the parent version's steps reviewers marked
    `error` (number, text); when given, `marked_steps_revised` checks they were rewritten."""
    options = dict(item.options)
    text = rationale.text or ""
    results = [check_parse(rationale.parse_status, rationale.parse_error)]
    if rationale.parse_status == "ok":
        results.append(check_answer_matches_gold(rationale.final_answer, item.answer_labels, mode=mode))
    results += [
        check_options_addressed(options, text),
        check_length(rationale.steps, text, bounds),
        check_answer_leakage(text),
        check_language(item.language, text),
    ]
    if rationale.fingerprint is not None:
        results.append(check_near_duplicate(rationale.fingerprint, index, item_id=item.id,
                                            max_distance=max_distance))
    if compare_reference:
        ref = check_reference_agreement(rationale.final_answer, item.reference_explanation, text)
        if ref is not None:
            results.append(ref)
    if marked_steps:
        results.append(check_marked_steps_revised(marked_steps, rationale.steps,
                                                  parent_version=rationale.parent_version))
    return results
