"""The structured rubric experts score against: dimensions, scale, anchors, pass thresholds, version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clinreason.domain.steps import DEFAULT_STEP_ERRORS, StepErrorCategory, taxonomy_from_dict, taxonomy_to_dict


class RubricError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    title: str
    description: str
    anchors: dict[int, str]
    threshold: int  # minimum score a passing rationale needs on this dimension


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
            raise RubricError(f"scores.{unknown[0]}: not a rubric dimension (expected one of {', '.join(self.names)})")
        clean: dict[str, int] = {}
        for name in self.names:
            if name not in scores:
                raise RubricError(f"scores.{name}: missing (every rubric dimension must be scored)")
            value = scores[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise RubricError(f"scores.{name}: expected an integer {self.scale_min}-{self.scale_max}, got {value!r}")
            if not self.scale_min <= value <= self.scale_max:
                raise RubricError(f"scores.{name}: {value} is outside the scale {self.scale_min}-{self.scale_max}")
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
                    "title": d.title,
                    "description": d.description,
                    "threshold": d.threshold,
                    "anchors": {str(k): v for k, v in sorted(d.anchors.items())},
                }
                for d in self.dimensions
            ],
            "step_errors": taxonomy_to_dict(self.step_errors),
        }


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
            anchors = {int(k): str(v) for k, v in anchors_raw.items()}
        except (ValueError, AttributeError):
            raise RubricError(f"{where}.anchors: expected a table of score -> description") from None
        bad = [k for k in anchors if not scale[0] <= k <= scale[1]]
        if bad:
            raise RubricError(f"{where}.anchors: score {bad[0]} is outside the scale")
        dims.append(
            Dimension(
                name=d["name"],
                title=str(d.get("title", d["name"].replace("_", " ").capitalize())),
                description=str(d.get("description", "")),
                anchors=anchors,
                threshold=threshold,
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


def _anchors(one: str, three: str, five: str) -> dict[int, str]:
    return {1: one, 2: "between 1 and 3", 3: three, 4: "between 3 and 5", 5: five}


DEFAULT_RUBRIC_DICT: dict[str, Any] = {
    "version": 1,
    "step_errors": {name: dict(text) for name, text in DEFAULT_STEP_ERRORS.items()},
    "scale": [1, 5],
    "require_all_accept": True,
    "dimensions": [
        {
            "name": "correctness",
            "title": "Medical correctness",
            "description": "Medical facts are right and guideline-concordant; reaches the gold answer for the right reasons.",
            "threshold": 5,
            "anchors": {str(k): v for k, v in _anchors(
                "Dangerous or wrong: a factual error that could harm a patient, or the wrong answer.",
                "Mostly right, with an imprecise or outdated statement that does not change the answer.",
                "Exemplary: every statement correct and current; the answer follows for the right reasons.",
            ).items()},
        },
        {
            "name": "reasoning",
            "title": "Reasoning structure",
            "description": "Logical order, no leaps; each distractor is ruled in or out.",
            "threshold": 4,
            "anchors": {str(k): v for k, v in _anchors(
                "No reasoning: the answer is asserted, or the steps contradict each other.",
                "Followable, but with a leap or a distractor left unaddressed.",
                "Each step follows from the last; every option is weighed explicitly.",
            ).items()},
        },
        {
            "name": "sufficiency",
            "title": "Information sufficiency",
            "description": "Uses the key findings of the stem; nothing essential missing.",
            "threshold": 4,
            "anchors": {str(k): v for k, v in _anchors(
                "Ignores the findings that decide the question.",
                "Uses most key findings; one relevant finding unused.",
                "Every decisive finding is used and tied to the conclusion.",
            ).items()},
        },
        {
            "name": "terminology",
            "title": "Terminology and clarity",
            "description": "Precise, standard terms; clear to a clinician.",
            "threshold": 4,
            "anchors": {str(k): v for k, v in _anchors(
                "Wrong or confusing terms that change the meaning.",
                "Understandable, with loose or non-standard wording.",
                "Precise standard terminology, concise and clear.",
            ).items()},
        },
        {
            "name": "clinical_value",
            "title": "Clinical value",
            "description": "What a clinician would teach: transferable reasoning, not trivia.",
            "threshold": 4,
            "anchors": {str(k): v for k, v in _anchors(
                "No teaching value, or teaches a harmful habit.",
                "Correct but generic; little a trainee would take away.",
                "Teaches the pattern a senior clinician would want a trainee to learn.",
            ).items()},
        },
    ],
}


def default_rubric() -> Rubric:
    return rubric_from_dict(DEFAULT_RUBRIC_DICT)
