"""How many experts should review a version: fixed overlap, or adaptive.

Adaptive allocation treats every piece of evidence about a version as a noisy witness of one hidden
fact — is this version sound? — and stops asking for reviews as soon as the answer is clear enough:

- the screening signals (all automatic checks passed; the LLM judge's pre-scores met the thresholds),
- each expert's review (passes or not),

each with its own sensitivity (says "pass" when the version is sound) and specificity (says "fail" when
it is defective), estimated from the project's own data by the Dawid–Skene model in `reliability.py`
(reviewers and screening signals alike; adjudications and calibration items anchor it). Their product
with the share of sound versions is the posterior P(sound). Then:

- accept when P(defective) <= `accept_risk` and a reviewer of adequate reliability passed it,
- send it back for regeneration when P(sound) <= `revise_risk` and a reviewer failed it,
- otherwise ask one more reviewer, up to `max_reviewers`, after which an adjudicator settles it.

So a confident draft passed by one reliable reviewer is accepted on one review; a positive review of a
draft the screening doubts, a negative review of a draft it trusted, a review from a reviewer whose
estimated reliability is low (a weak witness moves the posterior little), or a borderline review
(verdict and scores disagree: it counts as no evidence) all call for another reviewer. When the signals
are weak, the model learns so from the data and asks for more reviews by itself. A random audit share
starts with two reviewers so agreement stays measurable. Pure functions; the stages apply them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinreason.domain.consensus import ConsensusDecision, Outcome, Policy, ReviewVote, merge_feedback, passes
from clinreason.domain.rubric import Rubric

CHECKS_SOURCE = "screening:checks"  # every automatic check passed
JUDGE_SOURCE = "screening:judge"  # the LLM judge's pre-scores all met their thresholds
SIGNAL_SOURCES = (CHECKS_SOURCE, JUDGE_SOURCE)


@dataclass(frozen=True, slots=True)
class AllocationPolicy:
    """Adaptive allocation's view of the review policy (built from it: `from_policy`)."""

    mode: str  # fixed | adaptive
    overlap: int  # fixed mode: reviewers per version
    audit_share: float  # adaptive: share of versions always double-reviewed
    max_reviewers: int
    min_reliability: float  # an acceptance needs a passing review from a reviewer at least this reliable
    accept_risk: float  # accept when P(defective) is at most this
    revise_risk: float  # send back when P(sound) is at most this
    min_signal_accuracy: float  # below it (as fitted), an acceptance needs two passing reviews

    @classmethod
    def from_policy(cls, policy: Policy) -> AllocationPolicy:
        return cls(mode=policy.allocation, overlap=policy.overlap, audit_share=policy.audit_share,
                   max_reviewers=policy.max_reviewers, min_reliability=policy.min_reliability,
                   accept_risk=policy.accept_risk, revise_risk=policy.revise_risk,
                   min_signal_accuracy=policy.min_signal_accuracy)


@dataclass(frozen=True, slots=True)
class ScreeningSignals:
    checks_passed: bool  # every automatic check passed (blocking or not)
    judge_pass: bool | None = None  # the LLM judge's pre-scores all met their thresholds (None: no judge)
    flagged: bool = False  # sent to experts with a warning

    @property
    def confident(self) -> bool:
        return self.checks_passed and self.judge_pass is not False and not self.flagged

    @classmethod
    def from_checks(cls, rows: list[tuple[str, bool]], *, flagged: bool = False) -> ScreeningSignals:
        """From a version's check rows (name, passed): `judge:*` rows are the LLM judge, the rest the
        automatic checks (a version with no automatic check has not passed them)."""
        automatic = [bool(passed) for name, passed in rows if not name.startswith("judge")]
        judge = [bool(passed) for name, passed in rows if name.startswith("judge")]
        return cls(checks_passed=bool(automatic) and all(automatic), judge_pass=all(judge) if judge else None,
                   flagged=flagged)

    def labels(self) -> list[tuple[str, bool]]:
        """The signals as witnesses: (source, says pass). A flagged draft failed its checks."""
        out = [(CHECKS_SOURCE, self.checks_passed and not self.flagged)]
        if self.judge_pass is not None:
            out.append((JUDGE_SOURCE, self.judge_pass))
        return out


@dataclass(frozen=True, slots=True)
class Rates:
    sensitivity: float  # P(says pass | sound)
    specificity: float  # P(says fail | defective)

    @property
    def accuracy(self) -> float:
        return (self.sensitivity + self.specificity) / 2


@dataclass(frozen=True)
class EvidenceModel:
    """What the project's data say about its witnesses. Unknown reviewers and signals get the defaults
    (moderately informative) until the estimator has seen them."""

    prevalence: float = 0.6  # share of sound versions
    sources: dict[str, Rates] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)  # reviewer -> leniency, in score points
    default_reviewer: Rates = Rates(0.8, 0.8)
    default_signal: Rates = Rates(0.7, 0.7)

    def rates(self, source: str) -> Rates:
        if source in self.sources:
            return self.sources[source]
        return self.default_signal if source in SIGNAL_SOURCES else self.default_reviewer

    def reliability(self, reviewer: str) -> float:
        return self.rates(reviewer).accuracy

    def signal_accuracy(self) -> float | None:
        """Mean fitted balanced accuracy of the screening signals (None before any fit)."""
        fitted = [self.sources[name].accuracy for name in SIGNAL_SOURCES if name in self.sources]
        return sum(fitted) / len(fitted) if fitted else None

    def signals_weak(self, threshold: float) -> bool:
        """The fit rates the screening signals below `threshold` (never before there is a fit)."""
        accuracy = self.signal_accuracy()
        return accuracy is not None and accuracy < threshold

    def typical_reviewer(self) -> Rates:
        """The median reviewer of the project (the default before any is known)."""
        people = [r for name, r in self.sources.items() if name not in SIGNAL_SOURCES]
        if not people:
            return self.default_reviewer
        mid = len(people) // 2
        return Rates(sorted(r.sensitivity for r in people)[mid], sorted(r.specificity for r in people)[mid])


def leniency_offsets(votes_by_version: dict[str, list[ReviewVote]], *, min_shared: int = 20,
                     shrink: float = 10.0, min_offset: float = 0.25) -> dict[str, float]:
    """Each reviewer's habitual leniency (> 0) or harshness (< 0), in score points: the mean, over the
    versions they shared with other reviewers, of their mean score minus the others' mean score, shrunk
    towards 0 (n / (n + shrink)). Offsets from fewer than `min_shared` versions, or smaller than
    `min_offset`, are left out: a reviewer is taken at their word until the data say otherwise."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for votes in votes_by_version.values():
        scored = [(v.reviewer, sum(v.scores.values()) / len(v.scores)) for v in votes if v.scores]
        if len(scored) < 2:
            continue
        for i, (who, mine) in enumerate(scored):
            others = [m for j, (_, m) in enumerate(scored) if j != i]
            sums[who] = sums.get(who, 0.0) + mine - sum(others) / len(others)
            counts[who] = counts.get(who, 0) + 1
    out = {}
    for who, n in counts.items():
        offset = sums[who] / n * n / (n + shrink)
        if n >= min_shared and abs(offset) >= min_offset:
            out[who] = round(offset, 4)
    return out


def initial_reviewers(policy: AllocationPolicy, signals: ScreeningSignals, audit_draw: float) -> tuple[int, str]:
    """Reviewers a version starts with. `audit_draw` is a uniform [0, 1) number (seeded by the caller)."""
    if policy.mode != "adaptive":
        return policy.overlap, "fixed overlap"
    if audit_draw < policy.audit_share:
        return 2, "random audit: double review"
    return 1, "one reviewer first" + ("" if signals.confident else " (screening doubts it)")


def borderline(rubric: Rubric, vote: ReviewVote) -> bool:
    """The verdict and the scores point different ways: an accept with a dimension below its threshold,
    or a rejection with every dimension at or above it."""
    failing = rubric.failing_dimensions(vote.scores)
    return (vote.verdict == "accept" and bool(failing)) or (vote.verdict != "accept" and not failing)


def says_pass(rubric: Rubric, vote: ReviewVote, offset: float = 0.0) -> bool:
    """What a review says about the version once the reviewer's own leniency is taken out: every score,
    less the reviewer's offset, still reaches its threshold (to the nearest point). With no offset this
    is exactly the review's pass rule (`passes`) for a review that is not borderline. A habitually harsh
    reviewer's 3 then reads as the 4 a typical reviewer would have given — their rejections start to
    carry information instead of being noise."""
    if offset == 0.0:
        return passes(rubric, vote)
    return all(vote.scores.get(d.name, rubric.scale_min) - offset >= d.threshold - 0.5 for d in rubric.dimensions)


def _witness(model: EvidenceModel, rubric: Rubric, vote: ReviewVote) -> bool:
    return says_pass(rubric, vote, model.offsets.get(vote.reviewer, 0.0))


def p_sound(model: EvidenceModel, rubric: Rubric, signals: ScreeningSignals, votes: list[ReviewVote]) -> float:
    """Posterior probability that the version is sound, given the signals and the non-borderline votes
    (witnesses independent given the truth, as in Dawid–Skene)."""
    good, bad = model.prevalence, 1 - model.prevalence
    witnesses = signals.labels() + [(v.reviewer, _witness(model, rubric, v)) for v in votes
                                    if not borderline(rubric, v)]
    for source, said_pass in witnesses:
        r = model.rates(source)
        good *= r.sensitivity if said_pass else 1 - r.sensitivity
        bad *= (1 - r.specificity) if said_pass else r.specificity
    return good / (good + bad) if good + bad > 0 else 0.5


def decide_adaptive(rubric: Rubric, policy: AllocationPolicy, votes: list[ReviewVote], signals: ScreeningSignals,
                    model: EvidenceModel, *, required: int) -> ConsensusDecision:
    """The consensus outcome for one version under adaptive allocation. PENDING with feedback means
    "ask one more reviewer" (the stage records that request); without feedback, "wait for the reviews
    already asked for"."""
    feedback = merge_feedback(rubric, votes)
    if any(v.verdict == "flag_question" for v in votes):
        who = ", ".join(v.reviewer for v in votes if v.verdict == "flag_question")
        return ConsensusDecision(Outcome.FLAGGED, f"question flagged as flawed by {who}", feedback)
    if len(votes) < required:
        return ConsensusDecision(Outcome.PENDING, f"{len(votes)} of {required} reviews in",
                                 reviews_needed=required - len(votes))
    p = p_sound(model, rubric, signals, votes)
    clear = [v for v in votes if not borderline(rubric, v)]
    trusted_pass = [v for v in clear
                    if _witness(model, rubric, v) and model.reliability(v.reviewer) >= policy.min_reliability]
    failed = [v for v in clear if not _witness(model, rubric, v)]
    n = len(votes)
    evidence = f"P(sound) = {p:.3f} after {n} review{'s' if n != 1 else ''} and the screening signals"
    # Reviewers tend to miss the same subtle defects, which no fit on their verdicts can see; informative
    # screening signals err independently of them and catch those. When the fit says the signals are
    # weak, one passing review is not enough, whatever the posterior says.
    weak = model.signals_weak(policy.min_signal_accuracy)
    if p >= 1 - policy.accept_risk and len(trusted_pass) >= (2 if weak else 1):
        return ConsensusDecision(Outcome.ACCEPTED, f"{evidence}: accepted ({len(trusted_pass)} of {n} pass, "
                                 "leniency allowed for)")
    if p <= policy.revise_risk and failed:
        return ConsensusDecision(Outcome.NEEDS_REVISION, f"{evidence}: send back ({len(failed)} of {n} fail, "
                                 "leniency allowed for)",
                                 feedback)
    if n < policy.max_reviewers:
        if _can_settle(policy, model, p, policy.max_reviewers - n):
            return ConsensusDecision(Outcome.PENDING, f"{evidence}: {_why_more(rubric, policy, votes, signals, model)}",
                                     feedback, reviews_needed=1)
        return ConsensusDecision(Outcome.DISAGREEMENT, f"{evidence}: the {policy.max_reviewers - n} review(s) left "
                                 "could not settle it either way", feedback)
    return ConsensusDecision(Outcome.DISAGREEMENT, f"{evidence}: still uncertain after {n} reviews", feedback)


def _can_settle(policy: AllocationPolicy, model: EvidenceModel, p: float, remaining: int) -> bool:
    """Could `remaining` more reviews from a typical reviewer of this project settle the version (all
    passing reach the acceptance limit, or all failing the send-back limit)? If not, asking them only
    spends expert time before the adjudicator who will decide anyway."""
    typical = model.typical_reviewer()
    odds = p / (1 - p) if p < 1 else float("inf")
    pass_ratio = typical.sensitivity / max(1 - typical.specificity, 1e-9)
    fail_ratio = (1 - typical.sensitivity) / max(typical.specificity, 1e-9)
    accept_odds = (1 - policy.accept_risk) / policy.accept_risk
    revise_odds = policy.revise_risk / (1 - policy.revise_risk)
    return odds * pass_ratio ** remaining >= accept_odds or odds * fail_ratio ** remaining <= revise_odds


def _why_more(rubric: Rubric, policy: AllocationPolicy, votes: list[ReviewVote], signals: ScreeningSignals,
              model: EvidenceModel) -> str:
    """Say in words why the evidence is not yet enough (the reason recorded with the extra request)."""
    last = votes[-1]
    if model.signals_weak(policy.min_signal_accuracy) and _witness(model, rubric, last):
        return (f"the screening signals are weak (estimated accuracy {model.signal_accuracy():.2f}): a second "
                "passing review is needed")
    if borderline(rubric, last):
        return "the review is borderline (its verdict and its scores disagree): one more reviewer"
    if model.reliability(last.reviewer) < policy.min_reliability:
        return f"{last.reviewer}'s estimated reliability is below {policy.min_reliability:.2f}: one more reviewer"
    verdicts = {_witness(model, rubric, v) for v in votes if not borderline(rubric, v)}
    if len(verdicts) > 1:
        return "the reviewers disagree: one more reviewer"
    if _witness(model, rubric, last) and not signals.confident:
        return "a positive review of a draft the screening doubts: one more reviewer"
    if not _witness(model, rubric, last) and signals.confident:
        return "a negative review of a draft the screening trusted: one more reviewer"
    return "not yet conclusive: one more reviewer"
