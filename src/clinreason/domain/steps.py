"""Step-level verification: a reviewer's marks on the numbered steps of a rationale version, the clinical
error taxonomy they pick from, and how one version's steps became the next one's. Pure: no I/O.

A mark says of one step (numbered 1… as displayed) either `ok` or `error`; an error carries a category
from the project's taxonomy (`[rubric.step_errors]`), a severity (`minor` < `major` < `critical`), a note,
and optionally the corrected step."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from clinreason.domain.messages import N_, Params, fill


class StepVerdict(StrEnum):
    OK = "ok"
    ERROR = "error"


class Severity(StrEnum):
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


MAX_NOTE_CHARS = 5_000
MAX_CORRECTION_CHARS = 20_000


class StepMarkError(ValueError):
    """A mark the reviewer can fix; `field` names it, e.g. `steps[0].step`."""

    def __init__(self, field: str, message: str, params: Params = None):
        self.template, self.params = message, (dict(params) if params is not None else None)
        self.message = fill(message, params)  # English; web/i18n.py translates template + params
        super().__init__(f"{field}: {self.message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class StepErrorCategory:
    """One entry of the clinical error taxonomy, described in each language the project gives."""

    name: str
    descriptions: dict[str, str]  # language -> one line

    def description(self, language: str = "en") -> str:
        return self.descriptions.get(language) or self.descriptions.get("en") or next(
            iter(self.descriptions.values()), "")


@dataclass(frozen=True, slots=True)
class StepMark:
    step: int  # 1-based, as displayed
    verdict: StepVerdict
    category: str | None = None
    severity: Severity | None = None
    note: str | None = None
    correction: str | None = None

    @property
    def is_error(self) -> bool:
        return self.verdict is StepVerdict.ERROR

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "verdict": self.verdict.value}
        if self.is_error:
            out.update(category=self.category, severity=self.severity.value if self.severity else None,
                       note=self.note)
            if self.correction:
                out["correction"] = self.correction
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepMark:
        """A stored mark (already validated when it was submitted)."""
        severity = data.get("severity")
        return cls(step=int(data["step"]), verdict=StepVerdict(data["verdict"]), category=data.get("category"),
                   severity=Severity(severity) if severity else None, note=data.get("note"),
                   correction=data.get("correction"))


DEFAULT_STEP_ERRORS: dict[str, dict[str, str]] = {
    "factual_error": {"en": "A medical fact is wrong (pathophysiology, pharmacology, diagnostic criteria, values).",
                      "zh": "医学事实错误（病理生理、药理、诊断标准或数值有误）。"},
    "unsafe": {"en": "Following this step could harm a patient (contraindicated drug, missed emergency, wrong dose).",
               "zh": "按此步骤处理可能伤害患者（禁忌用药、漏诊急症、剂量错误）。"},
    "outdated_guideline": {"en": "Reflects a superseded guideline or practice that current standards reject.",
                           "zh": "依据已被更新或废止的指南或做法。"},
    "logical_leap": {"en": "The conclusion does not follow from what came before; a step in between is missing.",
                     "zh": "结论不能由前文推出，中间缺少推理环节。"},
    "missing_finding": {"en": "Ignores a finding in the stem that changes the reasoning.",
                        "zh": "忽略了题干中影响推理的关键信息。"},
    "misread_stem": {"en": "Misreads the question: a finding, value or what is asked is stated wrongly.",
                     "zh": "误读题干：题干中的表现、数值或所问内容被错误理解。"},
    "terminology": {"en": "Wrong, ambiguous or non-standard medical term.",
                    "zh": "医学术语错误、含糊或不规范。"},
    "irrelevant": {"en": "Does not contribute to answering this question.",
                   "zh": "与本题作答无关。"},
}


def taxonomy_from_dict(data: Any, *, where: str = "rubric.step_errors") -> tuple[StepErrorCategory, ...]:
    """The taxonomy from its config form: name -> one line (one language) or a table {en = "…", zh = "…"}."""
    if data is None:
        data = DEFAULT_STEP_ERRORS
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{where}: expected a table of category -> description")
    out: list[StepErrorCategory] = []
    for name, value in data.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
            raise ValueError(f"{where}.{name}: a category name is lower-case letters, digits and _")
        if isinstance(value, str):
            descriptions = {"en": value}
        elif isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in value.items()):
            descriptions = dict(value)
        else:
            raise ValueError(f"{where}.{name}: expected a one-line description or a table of language -> text")
        out.append(StepErrorCategory(name=name, descriptions=descriptions))
    return tuple(out)


def taxonomy_to_dict(taxonomy: tuple[StepErrorCategory, ...]) -> dict[str, dict[str, str]]:
    return {c.name: dict(c.descriptions) for c in taxonomy}


def validate_marks(raw: Any, *, n_steps: int, categories: list[str]) -> list[StepMark]:
    """Check a review's `steps` against the version's steps and the taxonomy; raise StepMarkError naming
    the field (`steps[i].step`, `steps[i].category`, …). At most one mark per step; sorted by step."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StepMarkError("steps", N_("expected a list of marks, e.g. [{\"step\": 1, \"verdict\": \"ok\"}]"))
    seen: set[int] = set()
    marks: list[StepMark] = []
    known = {"step", "verdict", "category", "severity", "note", "correction"}
    for i, entry in enumerate(raw):
        where = f"steps[{i}]"
        if not isinstance(entry, dict):
            raise StepMarkError(where, N_("expected an object with step and verdict"))
        extra = sorted(set(entry) - known)
        if extra:
            raise StepMarkError(f"{where}.{extra[0]}", N_("not a field of a step mark (expected {fields})"),
                                {"fields": ", ".join(sorted(known))})
        step = entry.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise StepMarkError(f"{where}.step", N_("expected a step number 1-{n}, got {step!r}"),
                                {"n": n_steps, "step": step})
        if not 1 <= step <= n_steps:
            raise StepMarkError(f"{where}.step", N_("step {step} is out of range: this version has {n} step (1-{n})")
                                if n_steps == 1 else
                                N_("step {step} is out of range: this version has {n} steps (1-{n})"),
                                {"step": step, "n": n_steps})
        if step in seen:
            raise StepMarkError(f"{where}.step", N_("step {step} is marked twice"), {"step": step})
        seen.add(step)
        verdict = entry.get("verdict")
        if verdict not in {v.value for v in StepVerdict}:
            raise StepMarkError(f"{where}.verdict", N_("expected 'ok' or 'error', got {verdict!r}"),
                                {"verdict": verdict})
        if verdict == StepVerdict.OK:
            stray = [k for k in ("category", "severity", "note", "correction") if entry.get(k) not in (None, "")]
            if stray:
                raise StepMarkError(f"{where}.{stray[0]}",
                                    N_("only a step marked 'error' takes a {field}; mark it 'error' or leave it out"),
                                    {"field": stray[0]})
            marks.append(StepMark(step=step, verdict=StepVerdict.OK))
            continue
        category = entry.get("category")
        if not isinstance(category, str) or not category:
            raise StepMarkError(f"{where}.category", N_("required with verdict 'error': one of {categories}"),
                                {"categories": ", ".join(categories)})
        if category not in categories:
            raise StepMarkError(f"{where}.category", N_("unknown category {category!r} (expected one of {categories})"),
                                {"category": category, "categories": ", ".join(categories)})
        severity = entry.get("severity")
        if severity not in {s.value for s in Severity}:
            raise StepMarkError(f"{where}.severity",
                                N_("required with verdict 'error': minor, major or critical, got {severity!r}"),
                                {"severity": severity})
        note = entry.get("note")
        if not isinstance(note, str) or not note.strip():
            raise StepMarkError(f"{where}.note", N_("required with verdict 'error': say what is wrong with the step"))
        if len(note) > MAX_NOTE_CHARS:
            raise StepMarkError(f"{where}.note", N_("longer than {n} characters"), {"n": MAX_NOTE_CHARS})
        correction = entry.get("correction")
        if correction is not None and not isinstance(correction, str):
            raise StepMarkError(f"{where}.correction", N_("expected text (the corrected step)"))
        if correction and len(correction) > MAX_CORRECTION_CHARS:
            raise StepMarkError(f"{where}.correction", N_("longer than {n} characters"), {"n": MAX_CORRECTION_CHARS})
        marks.append(StepMark(step=step, verdict=StepVerdict.ERROR, category=category, severity=Severity(severity),
                              note=note.strip(), correction=(correction or "").strip() or None))
    return sorted(marks, key=lambda m: m.step)


def blocking_marks(marks: list[StepMark], threshold: Severity | None) -> list[StepMark]:
    """The error marks at or above `threshold` (None: nothing blocks)."""
    if threshold is None:
        return []
    return [m for m in marks if m.is_error and m.severity is not None and m.severity.rank >= threshold.rank]


# --- how one version's steps became the next one's ---------------------------------------------------

# "Step 3:", "3.", "3)", "第3步：", "第三步" — a step's own numbering, which inserting a step shifts
_NUMBERING = re.compile(r"^\s*(?:(?:step\s*)?\d{1,3}\s*[.):：、]|step\s*\d{1,3}\b|第\s*[一二三四五六七八九十\d]+\s*步\s*[:：、]?)\s*",
                        re.IGNORECASE)


def normalise_step(text: str) -> str:
    """A step compared for "unchanged": its numbering ("3.", "Step 3:", "第3步："), case, whitespace and
    trailing punctuation do not count, so inserting a step does not make every later one "changed"."""
    return re.sub(r"\s+", " ", _NUMBERING.sub("", text, count=1)).strip().rstrip(".。;；").casefold()


@dataclass(frozen=True, slots=True)
class StepChange:
    kind: str  # unchanged | changed | added | removed
    old: int | None  # 1-based step number in the earlier version
    new: int | None  # 1-based step number in the later version
    old_text: str | None = None
    new_text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "old": self.old, "new": self.new, "old_text": self.old_text,
                "new_text": self.new_text}


def step_changes(old: list[str], new: list[str]) -> list[StepChange]:
    """Align two versions' steps: which were kept, changed (rewritten in place), added or removed."""
    a = [normalise_step(s) for s in old]
    b = [normalise_step(s) for s in new]
    out: list[StepChange] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [StepChange("unchanged", i + 1, j + 1, old[i], new[j]) for i, j in zip(range(i1, i2), range(j1, j2))]
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        out += [StepChange("changed", i1 + k + 1, j1 + k + 1, old[i1 + k], new[j1 + k]) for k in range(paired)]
        out += [StepChange("removed", i + 1, None, old[i], None) for i in range(i1 + paired, i2)]
        out += [StepChange("added", None, j + 1, None, new[j]) for j in range(j1 + paired, j2)]
    return out


def change_summary(changes: list[StepChange]) -> dict[str, list[int]]:
    """Step numbers by kind: changed/added are numbered in the later version, removed in the earlier one."""
    return {"changed": [c.new for c in changes if c.kind == "changed" and c.new is not None],
            "added": [c.new for c in changes if c.kind == "added" and c.new is not None],
            "removed": [c.old for c in changes if c.kind == "removed" and c.old is not None]}


def unrevised_marked_steps(marked: list[tuple[int, str]], new_steps: list[str]) -> list[int]:
    """The step numbers (of the earlier version) marked `error` whose text reappears unchanged in the new one."""
    kept = {normalise_step(s) for s in new_steps}
    return [n for n, text in marked if normalise_step(text) in kept]
