"""The review-allocation simulator behind `clinreason simulate`.

Synthetic items carry a hidden true quality per rubric dimension; their drafts come with screening
signals (automatic checks, an LLM judge) that agree with the truth at a configurable strength; synthetic
reviewers have their own accuracy, leniency and speed (a careless one and a harsh one among them).
Everything else is the real code: items enter review through the screening stage's `enter_review`,
reviewers are leased versions by `assign_next_review` and submit through `submit_review`, which runs the
real consensus stage; regeneration rounds, strikes and adjudication run as in production. Only the
LLM (a regenerated draft is better with some probability) and the humans are simulated.
"""

from __future__ import annotations

import random
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from clinreason.config import ProjectConfig
from clinreason.domain.items import Item as NewItem
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Check, Item, Origin
from clinreason.domain.rubric import Rubric, default_rubric
from clinreason.stages import adjudicate
from clinreason.stages.consensus import enter_review
from clinreason.stages.review import Lease, Reviewer, assign_next_review, submit_review
from clinreason.store import accounts, ingest, projects, readmodels
from clinreason.store import db as dbm
from clinreason.store import items as item_store
from clinreason.store import rationales as rationale_store
from clinreason.store.rationales import NewVersion

POLICIES = ("fixed-1", "fixed-2", "fixed-3", "adaptive")


@dataclass(frozen=True, slots=True)
class SimReviewer:
    name: str
    noise: float  # standard deviation of the score error
    bias: float  # leniency (> 0) or harshness (< 0), in score points
    seconds: float  # mean seconds per review
    slip: float = 0.0  # chance the verdict is a coin toss (a careless reviewer)


DEFAULT_REVIEWERS = (
    SimReviewer("careful-1", 0.35, 0.0, 240), SimReviewer("careful-2", 0.35, 0.0, 260),
    SimReviewer("careful-3", 0.40, 0.1, 220), SimReviewer("average-1", 0.60, 0.0, 180),
    SimReviewer("average-2", 0.60, 0.2, 200), SimReviewer("lenient", 0.50, 0.6, 150),
    SimReviewer("harsh", 0.40, -0.8, 260), SimReviewer("careless", 1.20, 0.3, 60, slip=0.25),
)


@dataclass
class SimResult:
    policy: str
    items: int
    reviewers: int
    seed: int
    signal_strength: float
    reviews: int = 0
    adjudications: int = 0
    accepted: int = 0
    excluded: int = 0
    escalated_left: int = 0
    defective_accepted: int = 0
    wrongly_excluded: int = 0
    expert_seconds: float = 0.0
    versions: int = 0
    rounds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        acc = max(self.accepted, 1)
        expert = self.reviews + self.adjudications
        return {
            "policy": self.policy, "items": self.items, "reviewers": self.reviewers, "seed": self.seed,
            "signal_strength": self.signal_strength, "reviews": self.reviews, "accepted": self.accepted,
            "excluded": self.excluded, "adjudications": self.adjudications,
            "reviews_per_accepted": round(expert / acc, 4),
            "reviewer_reviews_per_accepted": round(self.reviews / acc, 4),
            "expert_minutes_per_accepted": round(self.expert_seconds / 60 / acc, 3),
            "residual_defect_rate": round(self.defective_accepted / acc, 4),
            "wrongly_excluded": self.wrongly_excluded,
            "rounds_per_item": round(sum(self.rounds) / max(len(self.rounds), 1), 3),
            "note": "reviews_per_accepted counts every expert judgment: reviews + adjudications",
            "versions": self.versions,
        }


class _World:
    """The hidden truth and the simulated humans and model."""

    def __init__(self, rubric: Rubric, rng: random.Random, signal_strength: float):
        self.rubric, self.rng, self.signal = rubric, rng, signal_strength
        self.quality: dict[str, dict[str, int]] = {}  # rationale id -> true scores

    def good(self, scores: dict[str, int]) -> bool:
        return not self.rubric.failing_dimensions(scores)

    def draft_quality(self) -> dict[str, int]:
        if self.rng.random() < 0.6:  # a sound draft
            return {d.name: (5 if d.name == "correctness" else self.rng.choice((4, 5, 5))) for d in self.rubric.dimensions}
        scores = {d.name: self.rng.choice((3, 4, 5)) for d in self.rubric.dimensions}
        scores["correctness"] = self.rng.choice((2, 3, 4, 4))
        return scores

    def improve(self, scores: dict[str, int]) -> dict[str, int]:
        """Guided regeneration fixes what failed, most of the time."""
        out = dict(scores)
        for d in self.rubric.dimensions:
            if out[d.name] < d.threshold and self.rng.random() < 0.7:
                out[d.name] = min(self.rubric.scale_max, out[d.name] + self.rng.choice((1, 2)))
        return out

    def signal_agrees(self) -> bool:
        """A screening signal tells the truth with probability 0.5 + strength/2."""
        return self.rng.random() < 0.5 + self.signal / 2

    def review(self, who: SimReviewer, truth: dict[str, int]) -> dict[str, Any]:
        scores = {}
        for d in self.rubric.dimensions:
            seen = truth[d.name] + who.bias + self.rng.gauss(0, who.noise)
            scores[d.name] = int(min(self.rubric.scale_max, max(self.rubric.scale_min, round(seen))))
        ok = not self.rubric.failing_dimensions(scores)
        if who.slip and self.rng.random() < who.slip:
            ok = self.rng.random() < 0.5
            if ok:
                scores = {d.name: max(scores[d.name], d.threshold) for d in self.rubric.dimensions}
        seconds = max(10.0, self.rng.gauss(who.seconds, who.seconds * 0.3))
        if ok:
            return {"verdict": "accept", "scores": scores, "comments": {}, "seconds_spent": seconds}
        weak = ", ".join(self.rubric.failing_dimensions(scores)) or "overall"
        return {"verdict": "regenerate", "scores": scores, "comments": {"general": f"fix {weak}"},
                "seconds_spent": seconds}


def _config(policy: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    review: dict[str, Any] = {"max_strikes": 5}
    if policy == "adaptive":
        review.update(allocation="adaptive")  # every other setting: the project defaults (config.py)
    else:
        review.update(allocation="fixed", overlap=int(policy.split("-")[1]))
    review.update(overrides or {})
    pc = ProjectConfig.model_validate({"review": review})
    return pc.model_dump(mode="json", exclude={"rubric"})


def _new_version(conn: Connection, world: _World, *, item: Item, version: int, truth: dict[str, int],
                 origin: str) -> str:
    rid = f"{world.rng.getrandbits(128):032x}"  # from the seed: the audit draw hashes it
    rationale_store.add_version(conn, NewVersion(
        item=item, origin=Origin(origin), author="model:simulated", text=f"simulated rationale {rid}",
        parsed={"steps": ["step"], "final_answer": ["A"]}, version=version, model="simulated", rationale_id=rid))
    world.quality[rid] = truth
    good = world.good(truth)
    checks_ok = good if world.signal_agrees() else not good
    judge_ok = good if world.signal_agrees() else not good
    rationale_store.add_checks(conn, [Check(rid, "answer_matches_gold", checks_ok, detail="simulated"),
                                      Check(rid, "judge:correctness", judge_ok, detail="simulated")])
    return rid


def run_simulation(*, policy: str, n_items: int, n_reviewers: int = 8, seed: int = 0, signal_strength: float = 0.8,
                   workdir: Path | None = None, review: dict[str, Any] | None = None,
                   channel: Callable[..., Any] | None = None) -> SimResult:
    """Simulate one policy. `review`: project review settings to override (e.g. accept_risk). `channel`:
    how the simulated reviewers reach the system, `(engine, project_id, rubric_body, overlap) -> object`
    with `take(reviewer)` and `submit(reviewer, lease, body)` (default: the review stage, in process;
    a test passes one that goes through the HTTP API)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy '{policy}' (known: {', '.join(POLICIES)})")
    rng = random.Random(seed)
    rubric = default_rubric()
    world = _World(rubric, rng, signal_strength)
    people = [DEFAULT_REVIEWERS[i % len(DEFAULT_REVIEWERS)] for i in range(n_reviewers)]
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    folder = Path(tmp.name) if tmp else Path(str(workdir))
    folder.mkdir(parents=True, exist_ok=True)
    engine = dbm.make_engine(str(folder / f"sim-{policy}-{seed}.db"))
    try:
        return _simulate(engine, policy=policy, n_items=n_items, people=people, world=world, rng=rng, seed=seed,
                         review=review, channel_factory=channel)
    finally:
        engine.dispose()
        if tmp:
            tmp.cleanup()


class DirectReviews:
    """Reviewers reach the review stage in process, one transaction per lease and per submission."""

    def __init__(self, engine: Engine, project_id: int, rubric_body: dict[str, Any], overlap: int):
        self.engine, self.project_id, self.rubric_body, self.overlap = engine, project_id, rubric_body, overlap

    def take(self, reviewer: Reviewer) -> Lease | None:
        with dbm.transaction(self.engine) as conn:
            return assign_next_review(conn, project_id=self.project_id, reviewer=reviewer, overlap=self.overlap)

    def submit(self, reviewer: Reviewer, lease: Lease, body: dict[str, Any]) -> None:
        with dbm.transaction(self.engine) as conn:
            submit_review(conn, project_id=self.project_id, assignment_id=lease.assignment_id, reviewer=reviewer,
                          body=body, rubric_body=self.rubric_body, overlap=self.overlap)


def _simulate(engine: Engine, *, policy: str, n_items: int, people: list[SimReviewer], world: _World,
              rng: random.Random, seed: int, queue: int = 200, review: dict[str, Any] | None = None,
              channel_factory: Callable[..., Any] | None = None) -> SimResult:
    dbm.upgrade(engine)
    rubric_body = world.rubric.to_dict()
    with dbm.transaction(engine) as conn:
        project, _ = projects.ensure_project(conn, name="simulation", config=_config(policy, review),
                                             rubric=rubric_body)
        pid = project["id"]
        reviewers = []
        for i, person in enumerate(people):
            name = f"{person.name}-{i}"
            uid = accounts.add_user(conn, username=name, role="reviewer", specialties=[], password_hash="-")
            reviewers.append((Reviewer(uid, name), person))
        fresh = [NewItem(question=f"simulated question {n}", options={"A": "a", "B": "b"}, answer_labels=["A"],
                         id=f"sim{n:06d}", content_hash=f"sim{n:06d}".ljust(64, "0"), state="screening")
                 for n in range(n_items)]
        ingest.add_items(conn, project_id=pid, new=fresh)
        waiting_drafts: deque[tuple[str, str]] = deque()  # (item, its first version), in order
        for stored in item_store.project_items(conn, project_id=pid):
            waiting_drafts.append((stored.id, _new_version(conn, world, item=stored, version=1,
                                                           truth=world.draft_quality(), origin="generated")))
    base = 1 if policy == "adaptive" else int(policy.split("-")[1])
    channel = (channel_factory or DirectReviews)(engine, pid, rubric_body, base)
    while True:
        with dbm.transaction(engine) as conn:
            _release_drafts(conn, pid, waiting_drafts, queue=queue)
        progressed = False
        order = list(reviewers)
        rng.shuffle(order)
        for reviewer, person in order:
            lease = channel.take(reviewer)
            if lease is None:
                continue
            channel.submit(reviewer, lease, world.review(person, world.quality[lease.rationale_id]))
            progressed = True
        # the simulated worker regenerates, and the adjudicator decides, as soon as they are asked
        with dbm.transaction(engine) as conn:
            waiting = item_store.project_items(conn, project_id=pid, states=["regenerating", "escalated"])
            for item in waiting:
                if item.state == "regenerating":  # the simulated LLM: guided regeneration improves the draft
                    latest = rationale_store.latest_version(conn, item_id=item.id)
                    assert latest is not None
                    rid = _new_version(conn, world, item=item, version=latest.version + 1,
                                       truth=world.improve(world.quality[latest.id]), origin="regenerated")
                    item_store.transition_item(conn, item_id=item.id, expected=ItemState.REGENERATING,
                                               target=ItemState.SCREENING, actor="sim")
                    item_store.transition_item(conn, item_id=item.id, expected=ItemState.SCREENING,
                                               target=ItemState.IN_REVIEW, actor="sim")
                    enter_review(conn, project_id=pid, item_id=item.id, rationale_id=rid, actor="sim")
                else:  # a senior adjudicator knows the truth: accept a sound version, else exclude
                    good = [v.id for v in reversed(rationale_store.versions_of(conn, item_id=item.id))
                            if world.good(world.quality[v.id])]
                    if good:
                        adjudicate.accept_version(conn, project_id=pid, item_id=item.id, rationale_id=good[0],
                                                  adjudicator="sim-adjudicator")
                    else:
                        adjudicate.exclude(conn, project_id=pid, item_id=item.id, adjudicator="sim-adjudicator",
                                           reason="no sound version")
        if not progressed and not waiting and not waiting_drafts:
            break
    return _measure(engine, pid, policy, n_items, len(people), seed, world)


def _release_drafts(conn: Connection, pid: int, waiting: deque[tuple[str, str]], *, queue: int) -> None:
    """Drafts reach the review queue as the pipeline produces them, not all at once: top the queue up
    to `queue` items (in order), as a drafting worker running ahead of the reviewers would."""
    in_review = item_store.count_in_state(conn, project_id=pid, state="in_review") if waiting else queue
    while waiting and in_review < queue:
        item_id, rid = waiting.popleft()
        item_store.transition_item(conn, item_id=item_id, expected="screening", target="in_review", actor="sim")
        enter_review(conn, project_id=pid, item_id=item_id, rationale_id=rid, actor="sim")
        in_review += 1


def _measure(engine: Engine, pid: int, policy: str, n_items: int, n_reviewers: int, seed: int,
             world: _World) -> SimResult:
    result = SimResult(policy=policy, items=n_items, reviewers=n_reviewers, seed=seed, signal_strength=world.signal)
    with engine.connect() as conn:
        outcome = readmodels.simulation_outcome(conn, project_id=pid)
    result.reviews = outcome.reviews
    result.expert_seconds = outcome.expert_seconds
    result.versions = sum(len(v) for v in outcome.versions.values())
    result.adjudications = sum(1 for d in outcome.decisions if d.kind != "consensus")
    for d in outcome.decisions:
        if d.kind == "excluded":
            result.excluded += 1
            result.wrongly_excluded += any(world.good(world.quality[v]) for v in outcome.versions[d.item_id])
        else:
            result.accepted += 1
            result.defective_accepted += not world.good(world.quality[d.rationale_id or ""])
    result.rounds = [len(v) for v in outcome.versions.values()]
    result.escalated_left = outcome.escalated
    return result
