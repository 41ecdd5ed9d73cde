"""The cheaper read paths of issue #16 item 4 give exactly what the previous ones gave: the Dawid–Skene fit
(vectorised) bit for bit the plain loop, the intervals drawn once for several statistics those drawn for
each alone, the one-pass item groups every item-level aggregate, and the per-day counts of a one-project
database (no join back to the items) those of the join — on SQLite and PostgreSQL."""

from __future__ import annotations

import random

import pytest

from analytics import legacy_reliability, reviewdata
from clinreason.analytics import irr
from clinreason.analytics.stats import process_stats
from clinreason.domain.reliability import estimate
from clinreason.store import stats as stats_store
from clinreason.store.tables import decisions, items, reviews

REVIEWERS = [(f"rev{i}", "reviewer", [reviewdata.SPECIALTIES[i % 3]]) for i in range(5)] + [
    ("judge", "adjudicator", ["cardiology"])]
OTHERS = [(f"oth{i}", "reviewer", [reviewdata.SPECIALTIES[i % 3]]) for i in range(4)] + [
    ("judge2", "adjudicator", ["cardiology"])]


def _as_tuples(model):
    return ({k: (v.reviewer, v.sensitivity, v.specificity, v.reviews) for k, v in model.reviewers.items()},
            list(model.reviewers), model.prevalence, list(model.posterior.items()), model.iterations)


@pytest.mark.parametrize("seed", range(40))
def test_the_vectorised_fit_is_the_loop_bit_for_bit(seed):
    rng = random.Random(seed)
    n_versions, n_reviewers = rng.randint(0, 80), rng.randint(1, 9)
    labels = [(f"v{rng.randrange(max(n_versions, 1))}", f"r{rng.randrange(n_reviewers)}", rng.random() < 0.7)
              for _ in range(rng.randint(0, 300))]
    known = {f"v{i}": rng.random() < 0.5 for i in range(n_versions) if rng.random() < 0.2}
    options = dict(max_iter=rng.choice([1, 3, 50, 200]), tol=rng.choice([1e-4, 1e-6]),
                   prior_strength=rng.choice([0.5, 2.0]))
    assert _as_tuples(estimate(labels, known=known, **options)) == \
        _as_tuples(legacy_reliability.estimate(labels, known=known, **options))


def test_the_vectorised_fit_of_no_labels_is_the_loops():
    assert _as_tuples(estimate([])) == _as_tuples(legacy_reliability.estimate([]))


def test_intervals_drawn_once_are_those_drawn_for_each_statistic():
    rng = random.Random(3)
    counter = {}
    for _ in range(60):
        key = tuple(rng.randint(0, 2) for _ in range(5))
        if sum(key) >= 2:
            counter[key] = counter.get(key, 0) + rng.randint(1, 4)
    from collections import Counter

    p = irr.Patterns.from_counter(Counter(counter), [1, 2, 3, 4, 5]).pairable()
    stats = [lambda w: irr.alpha_from_patterns(p, "ordinal", w), lambda w: irr.alpha_from_patterns(p, "interval", w),
             lambda w: irr.percent_agreement_from_patterns(p, w)]
    together = irr.bootstrap_cis(p, stats, resamples=300, seed=5)
    assert together == [irr.bootstrap_ci(p, s, resamples=300, seed=5) for s in stats]
    assert all(ci is not None for ci in together)
    both = irr.alphas_from_patterns(p, ("ordinal", "interval"))
    assert both == [irr.alpha_from_patterns(p, "ordinal"), irr.alpha_from_patterns(p, "interval")]


@pytest.fixture
def two_projects(engine, project):
    """The project with review data, and a second project with its own items in the same database."""
    from clinreason.config import ProjectConfig
    from clinreason.store import projects as store_projects

    reviewdata.build(engine, project["id"], n_items=160, seed=21, reviewers=REVIEWERS)
    pc = ProjectConfig()
    with engine.begin() as conn:
        other, _ = store_projects.ensure_project(conn, name="other", config=pc.model_dump(mode="json",
                                                                                        exclude={"rubric"}),
                                                 rubric=pc.rubric)
    reviewdata.build(engine, other["id"], n_items=70, seed=22, prefix="ot", reviewers=OTHERS)
    return project["id"], other["id"]


def _separately(conn, pid):
    return (stats_store.accepted_count(conn, project_id=pid), stats_store.accepted_rounds(conn, project_id=pid),
            stats_store.accepted_origins(conn, project_id=pid),
            stats_store.item_breakdown(conn, project_id=pid, by="specialty"),
            sorted(stats_store.review_breakdown(conn, project_id=pid, by="specialty"), key=lambda r: r.key))


def test_the_item_groups_give_every_item_level_aggregate(engine, two_projects):
    with engine.connect() as conn:
        for pid in two_projects:
            rollup = stats_store.ItemRollup(stats_store.item_groups(conn, project_id=pid))
            together = (rollup.accepted_count(), rollup.accepted_rounds(), rollup.accepted_origins(),
                        rollup.item_breakdown(), sorted(rollup.review_breakdown(), key=lambda r: r.key))
            apart = _separately(conn, pid)
            assert together == apart
            assert list(together[1]) == list(apart[1])  # ascending rounds
            assert together[0] > 0 and len(together[2]) >= 2 and len(together[3]) >= 2


def test_process_stats_is_what_the_separate_aggregates_give(engine, two_projects):
    pid = two_projects[0]
    with engine.connect() as conn:
        stats = process_stats(conn, project_id=pid)
        accepted, rounds, _, item_rows, review_rows = _separately(conn, pid)
    assert stats["accepted"] == accepted and stats["rounds"]["histogram"] == {str(r): n for r, n in rounds.items()}
    by_specialty = stats["by_specialty"]
    assert list(by_specialty) == [row.key for row in item_rows]
    for row in review_rows:
        assert by_specialty[row.key]["reviews"] == row.reviews


def _per_day_by_join(conn, pid):
    from sqlalchemy import func, select

    def count(table, where):
        day = func.date(table.c.created_at)
        rows = conn.execute(select(day, func.count()).select_from(table.join(items, items.c.id == table.c.item_id))
                            .where(items.c.project_id == pid, *where).group_by(day).order_by(day))
        return [(str(d)[:10], int(n)) for d, n in rows if d is not None]

    return (count(decisions, [decisions.c.kind.in_(list(stats_store.ACCEPTED_KINDS))]), count(reviews, []))


def _per_day(conn, pid):
    return ([(d.day, d.count) for d in stats_store.decisions_per_day(conn, project_id=pid)],
            [(d.day, d.count) for d in stats_store.reviews_per_day(conn, project_id=pid)])


def test_per_day_counts_of_a_one_project_database_are_those_of_the_join(engine, project):
    reviewdata.build(engine, project["id"], n_items=120, seed=23, reviewers=REVIEWERS)
    with engine.connect() as conn:
        assert _per_day(conn, project["id"]) == _per_day_by_join(conn, project["id"])
        assert sum(n for _, n in _per_day(conn, project["id"])[1]) > 100


def test_per_day_counts_of_one_project_among_two_are_its_own(engine, two_projects):
    with engine.connect() as conn:
        for pid in two_projects:
            assert _per_day(conn, pid) == _per_day_by_join(conn, pid)
