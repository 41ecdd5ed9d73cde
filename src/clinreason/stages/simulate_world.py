"""The simulated world behind `clinreason simulate` (stages/simulate.py runs it through the real code):
the hidden truth of every version, the simulated reviewers, and the simulated model that regenerates.

Steps (issue #13). Every simulated version is an ordered list of 4-7 steps; a defective draft has one to
three *seeded wrong steps* at known positions (each with a category from the taxonomy and a severity), and
its true `correctness` is `scale_max - number of wrong steps` (so any wrong step fails the default pass
rule). A version is sound when its scores pass the rubric *and* it has no wrong step. A simulated
reviewer reads every step: a wrong step is marked `error` with probability `sensitivity`, a correct step
with probability `1 - specificity` (its own two numbers, `SimReviewer`); the reviewer's `correctness`
score is `scale_max - steps they marked`, the other dimensions are seen with noise and leniency as
before; the marks go in the review body (`steps`), through the same channel (`submit_review`, or the HTTP
API) as a real review, so consensus applies its step rules (`revise_on_step_error`, `block_on_severity`).

Regeneration of a version sent back (`StepModel`, `regeneration=`):
  targeted  the feedback consensus stored for the version (its `step_marks`, what guided regeneration
            renders) names the steps to fix: each marked wrong step is fixed with probability `p_fix`
            (else rewritten and still wrong); a correct step that was marked anyway is rewritten and
            breaks with probability `p_break`; every unmarked step is kept word for word (a wrong step
            no reviewer marked stays wrong).
  blind     the whole text is regenerated and the marks are not used: every step is rewritten; a wrong
            step is fixed with probability `p_fix_blind`, a correct step breaks with probability `p_break`.
In both modes the other dimensions improve as before (a failing dimension gains 1-2 points with
probability 0.7), so the two modes differ only in what happens to the steps.

What the simulation assumes (read its figures with these in mind):
  * independence: every step judgment is an independent Bernoulli draw given the step's truth; a
    reviewer who misses one error is no likelier to miss the next, and two reviewers of one version miss
    independently (real reviewers share blind spots, so real double review catches less than this);
  * fixed probabilities: p_fix, p_fix_blind, p_break do not depend on the step, its category or
    severity, the model, the round, or how many steps were marked; a fixed step stays fixed unless it is
    rewritten again; a rewrite is never partly right; steps are never added, removed or reordered;
  * reviewer accuracy is constant: no learning, fatigue or drift; sensitivity and specificity are the
    same for every category and severity; a reviewer who finds a wrong step names its true category and
    severity (a false mark gets a random category, minor or major);
  * wrong steps are the only correctness defect, and a version with none is medically correct; the
    other four dimensions carry no step positions;
  * the adjudicator knows the truth; time per review does not depend on the number of steps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from clinreason.domain.rubric import Rubric
from clinreason.domain.steps import Severity

REGENERATION_MODES = ("targeted", "blind")
#: the rubric dimension seeded wrong steps count against (true score = scale_max - wrong steps)
STEP_DIMENSION = "correctness"
#: how the severity of a seeded wrong step is drawn
SEVERITY_WEIGHTS = ((Severity.MINOR, 0.35), (Severity.MAJOR, 0.5), (Severity.CRITICAL, 0.15))


@dataclass(frozen=True, slots=True)
class SimReviewer:
    name: str
    noise: float  # standard deviation of the score error
    bias: float  # leniency (> 0) or harshness (< 0), in score points
    seconds: float  # mean seconds per review
    slip: float = 0.0  # chance the verdict is a coin toss (a careless reviewer)
    sensitivity: float = 0.8  # P(a wrong step is marked `error`)
    specificity: float = 0.98  # P(a correct step is left unmarked): 1 - specificity is the false-mark rate


#: step accuracy follows each reviewer's score accuracy: the careful ones catch most wrong steps and rarely
#: mark a sound one; the lenient one misses more, the harsh one marks sound steps more, the careless one both
DEFAULT_REVIEWERS = (
    SimReviewer("careful-1", 0.35, 0.0, 240, sensitivity=0.90, specificity=0.99),
    SimReviewer("careful-2", 0.35, 0.0, 260, sensitivity=0.90, specificity=0.99),
    SimReviewer("careful-3", 0.40, 0.1, 220, sensitivity=0.88, specificity=0.985),
    SimReviewer("average-1", 0.60, 0.0, 180, sensitivity=0.80, specificity=0.98),
    SimReviewer("average-2", 0.60, 0.2, 200, sensitivity=0.78, specificity=0.98),
    SimReviewer("lenient", 0.50, 0.6, 150, sensitivity=0.70, specificity=0.995),
    SimReviewer("harsh", 0.40, -0.8, 260, sensitivity=0.92, specificity=0.95),
    SimReviewer("careless", 1.20, 0.3, 60, slip=0.25, sensitivity=0.50, specificity=0.97),
)


@dataclass(frozen=True, slots=True)
class StepModel:
    """How the simulated LLM rewrites steps when a version is sent back (module docstring)."""

    regeneration: str = "targeted"  # targeted | blind
    p_fix: float = 0.8  # targeted: a marked wrong step is fixed
    p_fix_blind: float = 0.5  # blind: a wrong step is fixed by the whole-text rewrite
    p_break: float = 0.1  # a correct step that is rewritten (blind: every one) becomes wrong
    min_steps: int = 4
    max_steps: int = 7

    def __post_init__(self) -> None:
        if self.regeneration not in REGENERATION_MODES:
            raise ValueError(f"unknown regeneration mode '{self.regeneration}' "
                             f"(known: {', '.join(REGENERATION_MODES)})")
        for name in ("p_fix", "p_fix_blind", "p_break"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError("steps: expected 1 <= min_steps <= max_steps")

    def to_dict(self) -> dict[str, Any]:
        return {"regeneration": self.regeneration, "p_fix": self.p_fix, "p_fix_blind": self.p_fix_blind,
                "p_break": self.p_break}


@dataclass(frozen=True, slots=True)
class Truth:
    """The hidden truth of one simulated version: its scores and which of its steps are wrong."""

    scores: dict[str, int]  # true score per dimension; STEP_DIMENSION follows the wrong steps
    steps: tuple[str, ...]  # the steps' texts, as stored
    wrong: dict[int, tuple[str, Severity]]  # 1-based step number -> (category, severity) of a seeded error

    @property
    def n_steps(self) -> int:
        return len(self.steps)


class _World:
    """The hidden truth and the simulated humans and model."""

    def __init__(self, rubric: Rubric, rng: random.Random, signal_strength: float, steps: StepModel | None = None):
        self.rubric, self.rng, self.signal = rubric, rng, signal_strength
        self.model = steps or StepModel()
        self.categories = rubric.step_error_names
        self.truth: dict[str, Truth] = {}  # rationale id -> its hidden truth

    def good(self, truth: Truth) -> bool:
        return not truth.wrong and not self.rubric.failing_dimensions(truth.scores)

    def _step_text(self, n: int) -> str:
        return f"Step {n}: simulated reasoning {self.rng.getrandbits(48):012x}."

    def _severity(self) -> Severity:
        x, acc = self.rng.random(), 0.0
        for severity, weight in SEVERITY_WEIGHTS:
            acc += weight
            if x < acc:
                return severity
        return SEVERITY_WEIGHTS[-1][0]

    def _wrong_step(self) -> tuple[str, Severity]:
        return self.rng.choice(self.categories), self._severity()

    def _with_steps(self, scores: dict[str, int], steps: tuple[str, ...],
                    wrong: dict[int, tuple[str, Severity]]) -> Truth:
        out = dict(scores)
        if STEP_DIMENSION in out:
            out[STEP_DIMENSION] = max(self.rubric.scale_min, self.rubric.scale_max - len(wrong))
        return Truth(scores=out, steps=steps, wrong=dict(sorted(wrong.items())))

    def draft(self) -> Truth:
        """A first draft: sound (60 %), or defective with 1-3 wrong steps and maybe weak other dimensions."""
        n = self.rng.randint(self.model.min_steps, self.model.max_steps)
        steps = tuple(self._step_text(k) for k in range(1, n + 1))
        if self.rng.random() < 0.6:  # a sound draft
            scores = {d.name: (5 if d.name == STEP_DIMENSION else self.rng.choice((4, 5, 5)))
                      for d in self.rubric.dimensions}
            return self._with_steps(scores, steps, {})
        scores = {d.name: self.rng.choice((3, 4, 5)) for d in self.rubric.dimensions}
        n_wrong = min(n, self.rubric.scale_max - self.rng.choice((2, 3, 4, 4)))  # 1, 2 or 3 wrong steps
        positions = sorted(self.rng.sample(range(1, n + 1), n_wrong))
        return self._with_steps(scores, steps, {k: self._wrong_step() for k in positions})

    def regenerate(self, truth: Truth, marked: set[int]) -> Truth:
        """The simulated LLM's next version. `marked`: the step numbers the merged feedback marks `error`
        (targeted mode rewrites only those; blind mode ignores them and rewrites every step)."""
        m = self.model
        blind = m.regeneration == "blind"
        steps = list(truth.steps)
        wrong = dict(truth.wrong)
        for k in range(1, truth.n_steps + 1):
            if not blind and k not in marked:
                continue  # targeted: an unmarked step is kept word for word
            steps[k - 1] = self._step_text(k)
            if k in wrong:
                if self.rng.random() < (m.p_fix_blind if blind else m.p_fix):
                    del wrong[k]
            elif self.rng.random() < m.p_break:
                wrong[k] = self._wrong_step()
        return self._with_steps(self.improve(truth.scores), tuple(steps), wrong)

    def improve(self, scores: dict[str, int]) -> dict[str, int]:
        """Guided regeneration fixes what failed, most of the time (the step dimension follows the steps)."""
        out = dict(scores)
        for d in self.rubric.dimensions:
            if d.name != STEP_DIMENSION and out[d.name] < d.threshold and self.rng.random() < 0.7:
                out[d.name] = min(self.rubric.scale_max, out[d.name] + self.rng.choice((1, 2)))
        return out

    def signal_agrees(self) -> bool:
        """A screening signal tells the truth with probability 0.5 + strength/2."""
        return self.rng.random() < 0.5 + self.signal / 2

    def mark_steps(self, who: SimReviewer, truth: Truth) -> list[dict[str, Any]]:
        """One reviewer's marks on every step: a wrong step is found with P = sensitivity (named with its
        true category and severity), a correct one is marked anyway with P = 1 - specificity."""
        marks: list[dict[str, Any]] = []
        for k in range(1, truth.n_steps + 1):
            if k in truth.wrong:
                if self.rng.random() < who.sensitivity:
                    category, severity = truth.wrong[k]
                    marks.append({"step": k, "verdict": "error", "category": category, "severity": severity.value,
                                  "note": f"step {k}: {category.replace('_', ' ')}"})
                    continue
            elif self.rng.random() >= who.specificity:
                category = self.rng.choice(self.categories)
                severity = self.rng.choice((Severity.MINOR, Severity.MAJOR))
                marks.append({"step": k, "verdict": "error", "category": category, "severity": severity.value,
                              "note": f"step {k}: {category.replace('_', ' ')}"})
                continue
            marks.append({"step": k, "verdict": "ok"})
        return marks

    def review(self, who: SimReviewer, truth: Truth) -> dict[str, Any]:
        marks = self.mark_steps(who, truth)
        found = [m for m in marks if m["verdict"] == "error"]
        scores = {}
        for d in self.rubric.dimensions:
            if d.name == STEP_DIMENSION:  # what the reviewer found in the steps
                scores[d.name] = max(self.rubric.scale_min, self.rubric.scale_max - len(found))
                continue
            seen = truth.scores[d.name] + who.bias + self.rng.gauss(0, who.noise)
            scores[d.name] = int(min(self.rubric.scale_max, max(self.rubric.scale_min, round(seen))))
        ok = not self.rubric.failing_dimensions(scores)
        if who.slip and self.rng.random() < who.slip:
            ok = self.rng.random() < 0.5
            if ok:
                scores = {d.name: max(scores[d.name], d.threshold) for d in self.rubric.dimensions}
        seconds = max(10.0, self.rng.gauss(who.seconds, who.seconds * 0.3))
        if ok:
            return {"verdict": "accept", "scores": scores, "comments": {}, "seconds_spent": seconds, "steps": marks}
        weak = ", ".join(self.rubric.failing_dimensions(scores)) or "overall"
        where = f" (steps {', '.join(str(m['step']) for m in found)})" if found else ""
        return {"verdict": "regenerate", "scores": scores, "comments": {"general": f"fix {weak}{where}"},
                "seconds_spent": seconds, "steps": marks}
