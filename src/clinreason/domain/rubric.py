"""The structured rubric experts score against: dimensions, scale, anchors, pass thresholds, version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clinreason.domain.messages import N_, Params, fill
from clinreason.domain.steps import DEFAULT_STEP_ERRORS, StepErrorCategory, taxonomy_from_dict, taxonomy_to_dict


class RubricError(ValueError):
    """A rubric, or scores against it, that do not hold; `field` (when given) names the key, e.g.
    `scores.correctness`, and `template` + `params` make the message translatable (domain/messages.py)."""

    def __init__(self, message: str, params: Params = None, *, field: str | None = None):
        self.template, self.params, self.field = message, (dict(params) if params is not None else None), field
        self.message = fill(message, params)
        super().__init__(f"{field}: {self.message}" if field else self.message)


Texts = dict[str, str]  # language -> text ("en", "zh", ...)


def _in(texts: Texts, language: str) -> str:
    """The text in `language`, else English, else the first one given."""
    return texts.get(language) or texts.get("en") or next(iter(texts.values()), "")


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    title: str  # in English (or the one language the project gave); see title_in
    description: str
    anchors: dict[int, str]
    threshold: int  # minimum score a passing rationale needs on this dimension
    #: the same texts in every language the rubric gives (a project's own rubric may give one)
    titles: Texts = field(default_factory=dict)
    descriptions: Texts = field(default_factory=dict)
    anchor_texts: dict[int, Texts] = field(default_factory=dict)

    def title_in(self, language: str) -> str:
        return _in(self.titles, language) if self.titles else self.title

    def description_in(self, language: str) -> str:
        return _in(self.descriptions, language) if self.descriptions else self.description

    def anchors_in(self, language: str) -> dict[int, str]:
        if not self.anchor_texts:
            return dict(self.anchors)
        return {score: _in(texts, language) for score, texts in sorted(self.anchor_texts.items())}


@dataclass(frozen=True, slots=True)
class Rubric:
    dimensions: tuple[Dimension, ...]
    scale_min: int = 1
    scale_max: int = 5
    version: int = 1
    require_all_accept: bool = True
    #: the clinical error taxonomy a reviewer picks from when they mark a step (`[rubric.step_errors]`)
    step_errors: tuple[StepErrorCategory, ...] = taxonomy_from_dict(DEFAULT_STEP_ERRORS)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @property
    def step_error_names(self) -> list[str]:
        return [c.name for c in self.step_errors]

    def step_error(self, name: str) -> StepErrorCategory | None:
        return next((c for c in self.step_errors if c.name == name), None)

    def dimension(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        raise RubricError(f"unknown rubric dimension '{name}' (known: {', '.join(self.names)})")

    def validate_scores(self, scores: dict[str, Any]) -> dict[str, int]:
        """Every dimension scored, each an integer on the scale; returns the clean mapping."""
        unknown = sorted(set(scores) - set(self.names))
        if unknown:
            raise RubricError(N_("not a rubric dimension (expected one of {names})"), {"names": ", ".join(self.names)},
                              field=f"scores.{unknown[0]}")
        clean: dict[str, int] = {}
        for name in self.names:
            if name not in scores:
                raise RubricError(N_("missing (every rubric dimension must be scored)"), field=f"scores.{name}")
            value = scores[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise RubricError(N_("expected an integer {min}-{max}, got {value!r}"),
                                  {"min": self.scale_min, "max": self.scale_max, "value": value}, field=f"scores.{name}")
            if not self.scale_min <= value <= self.scale_max:
                raise RubricError(N_("{value} is outside the scale {min}-{max}"),
                                  {"value": value, "min": self.scale_min, "max": self.scale_max}, field=f"scores.{name}")
            clean[name] = value
        return clean

    def failing_dimensions(self, scores: dict[str, int]) -> list[str]:
        return [d.name for d in self.dimensions if scores.get(d.name, self.scale_min) < d.threshold]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scale": [self.scale_min, self.scale_max],
            "require_all_accept": self.require_all_accept,
            "dimensions": [
                {
                    "name": d.name,
                    "title": _texts_out(d.titles, d.title),
                    "description": _texts_out(d.descriptions, d.description),
                    "threshold": d.threshold,
                    "anchors": {str(k): _texts_out(d.anchor_texts.get(k, {}), v) for k, v in sorted(d.anchors.items())},
                }
                for d in self.dimensions
            ],
            "step_errors": taxonomy_to_dict(self.step_errors),
        }


def _texts_out(texts: Texts, fallback: str) -> str | Texts:
    """One language: the plain string (as a project wrote it); several: the table."""
    return dict(texts) if len(texts) > 1 else (next(iter(texts.values())) if texts else fallback)


def _texts_in(value: Any, where: str) -> Texts:
    """A text as the config gives it: a string, or a table of language -> string (`title.zh`, `title.en`)."""
    if isinstance(value, dict):
        if not value or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise RubricError(f"{where}: expected a string, or a table of language -> string (e.g. en = \"…\", zh = \"…\")")
        return dict(value)
    return {"en": str(value)}


def rubric_from_dict(data: dict[str, Any]) -> Rubric:
    """Build a rubric from its config form; every problem is reported with the key that holds it."""
    scale = data.get("scale", [1, 5])
    if not (isinstance(scale, list) and len(scale) == 2 and all(isinstance(x, int) for x in scale) and scale[0] < scale[1]):
        raise RubricError(f"rubric.scale: expected [min, max] integers with min < max, got {scale!r}")
    dims_raw = data.get("dimensions")
    if not isinstance(dims_raw, list) or not dims_raw:
        raise RubricError("rubric.dimensions: expected a non-empty list of dimensions")
    dims: list[Dimension] = []
    seen: set[str] = set()
    for i, d in enumerate(dims_raw):
        where = f"rubric.dimensions[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            raise RubricError(f"{where}.name: expected a non-empty string")
        if d["name"] in seen:
            raise RubricError(f"{where}.name: duplicate dimension '{d['name']}'")
        seen.add(d["name"])
        threshold = d.get("threshold", scale[1] - 1)
        if not isinstance(threshold, int) or not scale[0] <= threshold <= scale[1]:
            raise RubricError(f"{where}.threshold: expected an integer within the scale {scale[0]}-{scale[1]}")
        anchors_raw = d.get("anchors", {})
        try:
            anchor_texts = {int(k): _texts_in(v, f"{where}.anchors.{k}") for k, v in anchors_raw.items()}
        except (ValueError, AttributeError):
            raise RubricError(f"{where}.anchors: expected a table of score -> description") from None
        bad = [k for k in anchor_texts if not scale[0] <= k <= scale[1]]
        if bad:
            raise RubricError(f"{where}.anchors: score {bad[0]} is outside the scale")
        titles = _texts_in(d.get("title", d["name"].replace("_", " ").capitalize()), f"{where}.title")
        descriptions = _texts_in(d.get("description", ""), f"{where}.description")
        dims.append(
            Dimension(
                name=d["name"],
                title=_in(titles, "en"),
                description=_in(descriptions, "en"),
                anchors={k: _in(v, "en") for k, v in anchor_texts.items()},
                threshold=threshold,
                titles=titles,
                descriptions=descriptions,
                anchor_texts=anchor_texts,
            )
        )
    try:
        step_errors = taxonomy_from_dict(data.get("step_errors"))
    except ValueError as exc:
        raise RubricError(str(exc)) from None
    return Rubric(
        step_errors=step_errors,
        dimensions=tuple(dims),
        scale_min=scale[0],
        scale_max=scale[1],
        version=int(data.get("version", 1)),
        require_all_accept=bool(data.get("require_all_accept", True)),
    )


def _anchors(one: tuple[str, str], three: tuple[str, str], five: tuple[str, str]) -> dict[str, dict[str, str]]:
    """Anchors for 1, 3 and 5 as (English, Chinese); 2 and 4 lie between."""
    between = {2: ("between 1 and 3", "介于 1 与 3 之间"), 4: ("between 3 and 5", "介于 3 与 5 之间")}
    texts = {1: one, 2: between[2], 3: three, 4: between[4], 5: five}
    return {str(k): {"en": en, "zh": zh} for k, (en, zh) in texts.items()}


DEFAULT_RUBRIC_DICT: dict[str, Any] = {
    "version": 1,
    "step_errors": {name: dict(text) for name, text in DEFAULT_STEP_ERRORS.items()},
    "scale": [1, 5],
    "require_all_accept": True,
    "dimensions": [
        {
            "name": "correctness",
            "title": {"en": "Medical correctness", "zh": "医学准确性"},
            "description": {
                "en": "Medical facts are right and guideline-concordant; reaches the gold answer for the right reasons.",
                "zh": "医学事实正确，符合指南；基于正确的理由得出标准答案。"},
            "threshold": 5,
            "anchors": _anchors(
                ("Dangerous or wrong: a factual error that could harm a patient, or the wrong answer.",
                 "危险或错误：存在可能伤害患者的事实错误，或答案错误。"),
                ("Mostly right, with an imprecise or outdated statement that does not change the answer.",
                 "基本正确，有不够准确或过时的表述，但不影响答案。"),
                ("Exemplary: every statement correct and current; the answer follows for the right reasons.",
                 "堪称范例：每一表述均正确且符合现行标准；答案由正确的理由得出。"),
            ),
        },
        {
            "name": "reasoning",
            "title": {"en": "Reasoning structure", "zh": "推理结构"},
            "description": {"en": "Logical order, no leaps; each distractor is ruled in or out.",
                            "zh": "逻辑有序，无跳跃；每个干扰项都被纳入或排除。"},
            "threshold": 4,
            "anchors": _anchors(
                ("No reasoning: the answer is asserted, or the steps contradict each other.",
                 "没有推理：直接给出答案，或各步骤相互矛盾。"),
                ("Followable, but with a leap or a distractor left unaddressed.",
                 "可以理解，但有推理跳跃或有干扰项未分析。"),
                ("Each step follows from the last; every option is weighed explicitly.",
                 "每一步都承接上一步；每个选项都被明确分析。"),
            ),
        },
        {
            "name": "sufficiency",
            "title": {"en": "Information sufficiency", "zh": "信息充分性"},
            "description": {"en": "Uses the key findings of the stem; nothing essential missing.",
                            "zh": "利用了题干的关键信息；没有遗漏要点。"},
            "threshold": 4,
            "anchors": _anchors(
                ("Ignores the findings that decide the question.", "忽略了决定答案的关键信息。"),
                ("Uses most key findings; one relevant finding unused.", "利用了大部分关键信息；有一条相关信息未用。"),
                ("Every decisive finding is used and tied to the conclusion.", "每条决定性信息都被利用，并与结论相联系。"),
            ),
        },
        {
            "name": "terminology",
            "title": {"en": "Terminology and clarity", "zh": "术语规范"},
            "description": {"en": "Precise, standard terms; clear to a clinician.",
                            "zh": "术语准确、规范；临床医生读来清楚明白。"},
            "threshold": 4,
            "anchors": _anchors(
                ("Wrong or confusing terms that change the meaning.", "术语错误或混乱，改变了原意。"),
                ("Understandable, with loose or non-standard wording.", "可以理解，但措辞不严谨或不规范。"),
                ("Precise standard terminology, concise and clear.", "术语准确规范，简洁清楚。"),
            ),
        },
        {
            "name": "clinical_value",
            "title": {"en": "Clinical value", "zh": "临床价值"},
            "description": {"en": "What a clinician would teach: transferable reasoning, not trivia.",
                            "zh": "临床医生愿意传授的内容：可迁移的推理，而非琐碎知识。"},
            "threshold": 4,
            "anchors": _anchors(
                ("No teaching value, or teaches a harmful habit.", "没有教学价值，或传授了有害的习惯。"),
                ("Correct but generic; little a trainee would take away.", "正确但泛泛；学员收获甚少。"),
                ("Teaches the pattern a senior clinician would want a trainee to learn.",
                 "传授了资深临床医生希望学员掌握的思维模式。"),
            ),
        },
    ],
}


def default_rubric() -> Rubric:
    return rubric_from_dict(DEFAULT_RUBRIC_DICT)
