"""The review-allocation simulator behind `clinreason simulate`.

Synthetic items carry a hidden true quality per rubric dimension; their drafts come with screening
signals (automatic checks, an LLM judge) that agree with the truth at a configurable strength; synthetic
reviewers have their own accuracy, leniency and speed (a careless one and a harsh one among them).
Everything else is the real code: items enter review through the screening stage's `enter_review`,
reviewers are leased versions by `assign_next_review` and submit through `submit_review`, which runs the
real consensus stage; regeneration rounds, strikes and adjudication run as in production. Only the
LLM (a regenerated draft is better with some probability) and the humans are simulated.

The world models (the hidden truth, the simulated reviewers and regeneration) and what they assume are
in stages/simulate_world.py.
"""

from __future__ import annotations

import random
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from clinreason.config import ProjectConfig
from clinreason.domain.items import Item as NewItem
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Check, Item, Origin
from clinreason.domain.rubric import default_rubric, rubric_from_dict
from clinreason.stages import adjudicate
from clinreason.stages import settings as settings_store
from clinreason.stages.consensus import enter_review
from clinreason.stages.review import Lease, Reviewer, assign_next_review, submit_review
from clinreason.stages.settings import review_settings
from clinreason.stages.simulate_world import (  # re-exported: the world models' public names
    DEFAULT_REVIEWERS,
    REGENERATION_MODES,
    SEVERITY_WEIGHTS,
    STEP_DIMENSION,
    SimReviewer,
    StepModel,
    Truth,
    _World,
)
from clinreason.store import accounts, ingest, projects, readmodels
from clinreason.store import db as dbm
from clinreason.store import items as item_store
from clinreason.store import rationales as rationale_store
from clinreason.store import reviews as review_store
from clinreason.store.rationales import NewVersion

POLICIES = ("fixed-1", "fixed-2", "fixed-3", "adaptive")
__all__ = ["DEFAULT_REVIEWERS", "POLICIES", "REGENERATION_MODES", "SEVERITY_WEIGHTS", "STEP_DIMENSION", "DirectReviews",
           "SimResult", "SimReviewer", "StepModel", "StepTally", "TargetNotEmpty", "Truth", "database_name",
           "run_simulation"]


@dataclass
class StepTally:
    """Step judgments of one reviewer profile, measured from the stored reviews against the truth."""

    sensitivity: float  # as stated
    specificity: float
    wrong_seen: int = 0
    wrong_marked: int = 0
    correct_seen: int = 0
    correct_marked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"stated_sensitivity": self.sensitivity, "stated_specificity": self.specificity,
                "wrong_steps_reviewed": self.wrong_seen, "wrong_steps_marked": self.wrong_marked,
                "sensitivity": round(self.wrong_marked / self.wrong_seen, 4) if self.wrong_seen else None,
                "correct_steps_reviewed": self.correct_seen, "correct_steps_marked": self.correct_marked,
                "specificity": round(1 - self.correct_marked / self.correct_seen, 4) if self.correct_seen else None}


@dataclass
class SimResult:
    policy: str
    items: int
    reviewers: int
    seed: int
    signal_strength: float
    step_model: StepModel = field(default_factory=StepModel)
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
    accepted_rounds: list[int] = field(default_factory=list)  # review rounds of each accepted item
    seeded_wrong_steps: int = 0  # in the first drafts
    accepted_wrong_steps: int = 0  # wrong steps left in the accepted versions
    reviews_with_marks: int = 0  # stored reviews that carry step marks
    step_tallies: dict[str, StepTally] = field(default_factory=dict)  # reviewer profile -> tally

    def to_dict(self) -> dict[str, Any]:
        acc = max(self.accepted, 1)
        expert = self.reviews + self.adjudications
        wrong_seen = sum(t.wrong_seen for t in self.step_tallies.values())
        correct_seen = sum(t.correct_seen for t in self.step_tallies.values())
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
            "rounds_per_accepted": round(sum(self.accepted_rounds) / acc, 4),
            "all_rounds_per_accepted": round(sum(self.rounds) / acc, 4),
            "note": "reviews_per_accepted counts every expert judgment: reviews + adjudications; "
                    "rounds_per_accepted: mean review rounds (versions reviewed) of an accepted item until it was "
                    "accepted; all_rounds_per_accepted: every review round, excluded items' included, per accepted item",
            "versions": self.versions,
            "steps": {
                **self.step_model.to_dict(),
                "seeded_wrong_steps": self.seeded_wrong_steps,
                "wrong_steps_left_in_accepted": self.accepted_wrong_steps,
                "reviews_with_step_marks": self.reviews_with_marks,
                "sensitivity": round(sum(t.wrong_marked for t in self.step_tallies.values()) / wrong_seen, 4)
                if wrong_seen else None,
                "specificity": round(1 - sum(t.correct_marked for t in self.step_tallies.values()) / correct_seen, 4)
                if correct_seen else None,
                "by_reviewer": {name: t.to_dict() for name, t in sorted(self.step_tallies.items())},
            },
        }




def _config(policy: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    review: dict[str, Any] = {"max_strikes": 5}
    if policy == "adaptive":
        review.update(allocation="adaptive")  # every other setting: the project defaults (config.py)
    else:
        review.update(allocation="fixed", overlap=int(policy.split("-")[1]))
    review.update(overrides or {})
    pc = ProjectConfig.model_validate({"review": review})
    return pc.model_dump(mode="json", exclude={"rubric"})


def _version(world: _World, *, item: Item, version: int, truth: Truth, origin: str) -> tuple[NewVersion, list[Check]]:
    """A simulated version and its screening results, not stored yet (the random draws happen here, in
    the same order whether one version is stored or five thousand at once)."""
    rid = f"{world.rng.getrandbits(128):032x}"  # from the seed: the audit draw hashes it
    new = NewVersion(
        item=item, origin=Origin(origin), author="model:simulated", text="\n".join((*truth.steps, "Answer: A")),
        parsed={"steps": list(truth.steps), "final_answer": ["A"]}, version=version, model="simulated",
        rationale_id=rid)
    world.truth[rid] = truth
    good = world.good(truth)
    checks_ok = good if world.signal_agrees() else not good
    judge_ok = good if world.signal_agrees() else not good
    return new, [Check(rid, "answer_matches_gold", checks_ok, detail="simulated"),
                 Check(rid, "judge:correctness", judge_ok, detail="simulated")]


def _store_versions(conn: Connection, prepared: list[tuple[NewVersion, list[Check]]]) -> list[str]:
    """Store versions and their checks, two INSERTs however many; returns their ids."""
    born = rationale_store.add_versions(conn, [new for new, _ in prepared])
    rationale_store.add_checks(conn, [check for _, checks in prepared for check in checks])
    return [v.id for v in born]


def database_name(policy: str, seed: int, regeneration: str = "targeted") -> str:
    """The scratch database's file name in `workdir` (blind runs get their own)."""
    return f"sim-{policy}-{seed}.db" if regeneration == "targeted" else f"sim-{policy}-{seed}-{regeneration}.db"


class TargetNotEmpty(ValueError):
    """`db_url` names a database that already holds tables: the simulator writes only into an empty one."""


def run_simulation(*, policy: str, n_items: int, n_reviewers: int = 8, seed: int = 0, signal_strength: float = 0.8,
                   workdir: Path | None = None, review: dict[str, Any] | None = None,
                   channel: Callable[..., Any] | None = None, steps: StepModel | None = None,
                   people: list[SimReviewer] | None = None, db_url: str | None = None,
                   project: str = "simulation") -> SimResult:
    """Simulate one policy. `review`: project review settings to override (e.g. accept_risk). `channel`:
    how the simulated reviewers reach the system, `(engine, project_id, rubric_body, overlap) -> object`
    with `take(reviewer)` and `submit(reviewer, lease, body)` (default: the review stage, in process;
    a test passes one that goes through the HTTP API). `steps`: regeneration mode and its probabilities
    (default: targeted, p_fix 0.8, p_break 0.1). `people`: the reviewer profiles (default: cycle through
    DEFAULT_REVIEWERS). The first drafts depend on the seed only, so runs that differ in `steps` start
    from the same items.

    `db_url`: write the simulated project (named `project`) into this database and keep it there (a SQLite
    path or URL, a PostgreSQL URL), with the database's ordinary settings, instead of a scratch file that is
    tuned for speed (no fsync) and thrown away; the database must be empty (else TargetNotEmpty, and
    nothing is written)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy '{policy}' (known: {', '.join(POLICIES)})")
    model = steps or StepModel()
    rng = random.Random(seed)
    rubric = default_rubric()
    world = _World(rubric, rng, signal_strength, model)
    pool = tuple(people) if people else DEFAULT_REVIEWERS
    chosen = [pool[i % len(pool)] for i in range(n_reviewers)]
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if db_url is not None:
        engine = dbm.make_engine(db_url)
        try:
            tables = dbm.existing_tables(engine)
        except Exception:
            engine.dispose()
            raise
        if tables:
            engine.dispose()
            raise TargetNotEmpty(f"the database {engine.url.render_as_string(hide_password=True)} is not empty "
                                 f"({len(tables)} tables: {', '.join(tables[:4])}{', ...' if len(tables) > 4 else ''}); "
                                 "the simulator writes its project only into an empty database: give a new "
                                 "SQLite file or an empty PostgreSQL database")
    else:
        tmp = tempfile.TemporaryDirectory() if workdir is None else None
        folder = Path(tmp.name) if tmp else Path(str(workdir))
        folder.mkdir(parents=True, exist_ok=True)
        engine = dbm.make_engine(str(folder / database_name(policy, seed, model.regeneration)))
        dbm.tune_for_scratch(engine)  # a file thrown away (or only read back by a test): no fsync
    try:
        return _simulate(engine, policy=policy, n_items=n_items, people=chosen, world=world, rng=rng, seed=seed,
                         review=review, channel_factory=channel, project=project)
    finally:
        engine.dispose()
        if tmp:
            tmp.cleanup()


class DirectReviews:
    """Reviewers reach the review stage in process: one transaction per lease and per submission, or, inside
    `batch()`, one transaction for a whole round (the simulated reviewers act one after another, so a round
    in one transaction sees and decides exactly what it would in many; it only saves the commits). The
    project's review settings are read once: nothing changes them while the simulation runs, so every
    lease takes them as read instead of reading them again (`assign_next_review(settings=...)`), and inside
    `batch()` consensus too (`settings.holding`)."""

    def __init__(self, engine: Engine, project_id: int, rubric_body: dict[str, Any], overlap: int):
        self.engine, self.project_id, self.rubric_body, self.overlap = engine, project_id, rubric_body, overlap
        self.rubric = rubric_from_dict(rubric_body)  # parsed once: every submission is checked against it
        with dbm.reading(engine) as conn:
            self.settings = review_settings(conn, project_id)
        self._round: Connection | None = None

    @contextmanager
    def batch(self) -> Iterator[Connection]:
        """One transaction for everything done inside the block; yields its connection (the simulator's own
        work between the rounds goes through it too)."""
        if self._round is not None:  # already inside one
            yield self._round
            return
        with dbm.transaction(self.engine) as conn, settings_store.holding(conn, self.project_id):
            self._round = conn
            try:
                yield conn
            finally:
                self._round = None

    def _unit(self) -> AbstractContextManager[Connection]:
        return nullcontext(self._round) if self._round is not None else dbm.transaction(self.engine)

    def take(self, reviewer: Reviewer) -> Lease | None:
        with self._unit() as conn:
            return assign_next_review(conn, project_id=self.project_id, reviewer=reviewer, overlap=self.overlap,
                                      settings=self.settings)

    def submit(self, reviewer: Reviewer, lease: Lease, body: dict[str, Any]) -> None:
        with self._unit() as conn:
            submit_review(conn, project_id=self.project_id, assignment_id=lease.assignment_id, reviewer=reviewer,
                          body=body, rubric_body=self.rubric, overlap=self.overlap)


def _marked_steps(conn: Connection, rationale_id: str) -> set[int]:
    """The steps the merged feedback of a version sent back marks `error` (what guided regeneration reads)."""
    merged = review_store.feedback_for(conn, rationale_id=rationale_id)
    return {mark.step for _, mark in merged.step_marks} if merged is not None else set()


def _simulate(engine: Engine, *, policy: str, n_items: int, people: list[SimReviewer], world: _World,
              rng: random.Random, seed: int, queue: int = 200, review: dict[str, Any] | None = None,
              channel_factory: Callable[..., Any] | None = None, project: str = "simulation") -> SimResult:
    dbm.upgrade(engine)
    rubric_body = world.rubric.to_dict()
    profiles: dict[str, SimReviewer] = {}  # username -> who they are
    with dbm.transaction(engine) as conn:
        project_row, _ = projects.ensure_project(conn, name=project, config=_config(policy, review),
                                             rubric=rubric_body)
        pid = project_row["id"]
        reviewers = []
        for i, person in enumerate(people):
            name = f"{person.name}-{i}"
            uid = accounts.add_user(conn, username=name, role="reviewer", specialties=[], password_hash="-")
            reviewers.append((Reviewer(uid, name), person))
            profiles[name] = person
        fresh = [NewItem(question=f"simulated question {n}", options={"A": "a", "B": "b"}, answer_labels=["A"],
                         id=f"sim{n:06d}", content_hash=f"sim{n:06d}".ljust(64, "0"), state="screening")
                 for n in range(n_items)]
        ingest.add_items(conn, project_id=pid, new=fresh)
        stored_items = item_store.project_items(conn, project_id=pid)
        first = _store_versions(conn, [_version(world, item=stored, version=1, truth=world.draft(),
                                                origin="generated") for stored in stored_items])
        waiting_drafts: deque[tuple[str, str]] = deque(  # (item, its first version), in order
            zip((stored.id for stored in stored_items), first, strict=True))
        dbm.refresh_statistics(conn)
    # item id -> its versions' ids, oldest first: the simulator is the only author of versions (simulated
    # reviewers accept or send back, never edit), so this is what the store holds
    versions: dict[str, list[str]] = {stored.id: [rid] for stored, rid in zip(stored_items, first, strict=True)}
    base = 1 if policy == "adaptive" else int(policy.split("-")[1])
    channel = (channel_factory or DirectReviews)(engine, pid, rubric_body, base)
    # In process, several rounds and the simulator's own work between them share one transaction (nothing
    # else writes, so each step sees exactly what it would after a commit); another channel (the HTTP API)
    # commits its own requests, and the simulator's work gets transactions of its own around them.
    shared = isinstance(channel, DirectReviews)
    batch: Callable[[], AbstractContextManager[Any]] = getattr(channel, "batch", nullcontext)
    counters = {"submitted": 0, "analyzed_at": 64}  # planner statistics are refreshed each time the reviews double
    done = False
    while not done:
        if shared:
            with batch() as conn:
                for _ in range(ROUNDS_PER_TRANSACTION):
                    done = not _one_round(conn, conn, channel=channel, engine=engine, pid=pid, reviewers=reviewers,
                                          world=world, rng=rng, waiting_drafts=waiting_drafts, versions=versions,
                                          queue=queue, counters=counters)
                    if done:
                        break
        else:
            done = not _one_round(None, None, channel=channel, engine=engine, pid=pid, reviewers=reviewers,
                                  world=world, rng=rng, waiting_drafts=waiting_drafts, versions=versions,
                                  queue=queue, counters=counters, batch=batch)
    return _measure(engine, pid, policy, n_items, len(people), seed, world, profiles)


#: rounds of reviews that share one transaction when the reviewers work in process (fewer commits)
ROUNDS_PER_TRANSACTION = 32


def _one_round(before: Connection | None, after: Connection | None, *, channel: Any, engine: Engine, pid: int,
               reviewers: list[tuple[Reviewer, SimReviewer]], world: _World, rng: random.Random,
               waiting_drafts: deque[tuple[str, str]], versions: dict[str, list[str]], queue: int,
               counters: dict[str, int], batch: Callable[[], AbstractContextManager[Any]] = nullcontext) -> bool:
    """One round: drafts top up the queue, every reviewer (in a shuffled order) takes and reviews one version,
    then the simulated worker regenerates and the adjudicator decides what the round sent them. `before` and
    `after`: the connection for the drafts' release and for the round's aftermath (None: a transaction of
    their own each). Returns whether anything is left to do."""
    with nullcontext(before) if before is not None else dbm.transaction(engine) as conn:
        _release_drafts(conn, pid, waiting_drafts, queue=queue)
    progressed = False
    order = list(reviewers)
    rng.shuffle(order)
    with batch():
        for reviewer, person in order:
            lease = channel.take(reviewer)
            if lease is None:
                continue
            channel.submit(reviewer, lease, world.review(person, world.truth[lease.rationale_id]))
            counters["submitted"] += 1
            progressed = True
    if not progressed:  # no review, no consensus: nothing was sent to the worker or the adjudicator
        return bool(waiting_drafts)
    # the simulated worker regenerates, and the adjudicator decides, as soon as they are asked
    with nullcontext(after) if after is not None else dbm.transaction(engine) as conn:
        if counters["submitted"] >= counters["analyzed_at"]:
            dbm.refresh_statistics(conn)
            counters["analyzed_at"] *= 2
        waiting = item_store.project_items(conn, project_id=pid, states=["regenerating", "escalated"])
        # the new versions first, drawn in queue order and stored together (two INSERTs), then each item's
        # moves in queue order, as if one after another
        regenerated: dict[str, tuple[NewVersion, list[Check]]] = {}
        for item in waiting:
            if item.state == "regenerating":  # the simulated LLM: targeted or blind regeneration
                latest = versions[item.id][-1]
                marked = _marked_steps(conn, latest) if world.model.regeneration == "targeted" else set()
                regenerated[item.id] = _version(world, item=item, version=len(versions[item.id]) + 1,
                                                truth=world.regenerate(world.truth[latest], marked),
                                                origin="regenerated")
        if regenerated:
            for item_id, rid in zip(regenerated, _store_versions(conn, list(regenerated.values())), strict=True):
                versions[item_id].append(rid)
        for item in waiting:
            if item.id in regenerated:
                rid = versions[item.id][-1]
                item_store.transition_item(conn, item_id=item.id, expected=ItemState.REGENERATING,
                                           target=ItemState.SCREENING, actor="sim")
                item_store.transition_item(conn, item_id=item.id, expected=ItemState.SCREENING,
                                           target=ItemState.IN_REVIEW, actor="sim")
                enter_review(conn, project_id=pid, item_id=item.id, rationale_id=rid, actor="sim")
            else:  # a senior adjudicator knows the truth: accept a sound version, else exclude
                good = [rid for rid in reversed(versions[item.id]) if world.good(world.truth[rid])]
                if good:
                    adjudicate.accept_version(conn, project_id=pid, item_id=item.id, rationale_id=good[0],
                                              adjudicator="sim-adjudicator")
                else:
                    adjudicate.exclude(conn, project_id=pid, item_id=item.id, adjudicator="sim-adjudicator",
                                       reason="no sound version")
    return True


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
             world: _World, profiles: dict[str, SimReviewer]) -> SimResult:
    result = SimResult(policy=policy, items=n_items, reviewers=n_reviewers, seed=seed, signal_strength=world.signal,
                       step_model=world.model)
    tallies = result.step_tallies
    for person in profiles.values():
        tallies.setdefault(person.name, StepTally(person.sensitivity, person.specificity))
    with engine.connect() as conn:
        outcome = readmodels.simulation_outcome(conn, project_id=pid)
        stored_reviews = readmodels.project_reviews(conn, project_id=pid)
    result.reviews = outcome.reviews
    result.expert_seconds = outcome.expert_seconds
    result.versions = sum(len(v) for v in outcome.versions.values())
    result.adjudications = sum(1 for d in outcome.decisions if d.kind != "consensus")
    for d in outcome.decisions:
        if d.kind == "excluded":
            result.excluded += 1
            result.wrongly_excluded += any(world.good(world.truth[v]) for v in outcome.versions[d.item_id])
        else:
            result.accepted += 1
            accepted = world.truth[d.rationale_id or ""]
            result.defective_accepted += not world.good(accepted)
            result.accepted_wrong_steps += len(accepted.wrong)
            result.accepted_rounds.append(len(outcome.versions[d.item_id]))
    result.rounds = [len(v) for v in outcome.versions.values()]
    result.seeded_wrong_steps = sum(len(world.truth[v[0]].wrong) for v in outcome.versions.values() if v)
    result.escalated_left = outcome.escalated
    # the step marks as stored, against the truth of the version they judged
    for r in stored_reviews:
        who = profiles.get(r.reviewer or "")
        truth = world.truth.get(r.rationale_id)
        if who is None or truth is None:
            continue
        result.reviews_with_marks += bool(r.steps)
        errors = {m.step for m in r.marks if m.is_error}
        tally = tallies[who.name]
        for k in range(1, truth.n_steps + 1):
            if k in truth.wrong:
                tally.wrong_seen += 1
                tally.wrong_marked += k in errors
            else:
                tally.correct_seen += 1
                tally.correct_marked += k in errors
    return result
