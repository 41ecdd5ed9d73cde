"""The pairwise κ intervals are kept with the scan state: each (reviewer pair, dimension) table has a random
stream of its own, so its interval depends on that table alone; a read recomputes only the tables that
changed since the state was stored, and prints exactly what a computation from nothing prints."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from analytics import reviewdata
from analytics.test_kept_scan import REVIEWERS, _pack, _unpack, add_round, data_clock
from clinreason.analytics import irr, kept
from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.scan import scan_reviews
from clinreason.cli import app
from clinreason.store import projects as store_projects
from clinreason.store import scanstate
from clinreason.store.tables import scan_states


@pytest.fixture(autouse=True)
def _reads_follow_the_data(monkeypatch):
    monkeypatch.setattr(kept, "read_clock", data_clock)


@pytest.fixture
def counted(monkeypatch):
    """How many tables each call of the bootstrap worked out."""
    calls: list[int] = []
    real = irr.quadratic_kappa_bootstrap_rows

    def counting(confusion, **kw):
        calls.append(len(confusion))
        return real(confusion, **kw)

    monkeypatch.setattr(irr, "quadratic_kappa_bootstrap_rows", counting)
    return calls


def _tables(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 6, size=(n, 5, 5)).astype(np.int64)


def test_a_tables_interval_depends_on_that_table_and_its_key_alone():
    rng = np.random.default_rng(3)
    a, others, more = _tables(rng, 1), _tables(rng, 7), _tables(rng, 600)
    keys = [(1, 2, 0)] + [(9, 10, d) for d in range(7)]
    alone = irr.quadratic_kappa_bootstrap_rows(a, keys=keys[:1], seed=11)
    among = irr.quadratic_kappa_bootstrap_rows(np.concatenate([others, a]), keys=keys[1:] + keys[:1], seed=11)
    assert alone[0] is not None and among[-1] == alone[0]
    # past a chunk boundary, and with other tables around it, still the same interval
    far = irr.quadratic_kappa_bootstrap_rows(np.concatenate([more, a]), keys=[(5, 6, i) for i in range(600)] + keys[:1],
                                             seed=11, chunk=64)
    assert far[-1] == alone[0]
    # another key or another seed is another stream
    assert irr.quadratic_kappa_bootstrap_rows(a, keys=[(1, 3, 0)], seed=11)[0] != alone[0]
    assert irr.quadratic_kappa_bootstrap_rows(a, keys=keys[:1], seed=12)[0] != alone[0]
    with pytest.raises(ValueError, match="2 keys for 1 tables"):
        irr.quadratic_kappa_bootstrap_rows(a, keys=keys[:2])


def _changed_tables(before: dict, after: dict, k: int) -> int:
    n = 0
    for pair, cube in after.items():
        old = before.get(pair)
        n += k if old is None else sum(not np.array_equal(old[d], cube[d]) for d in range(k))
    return n


def _fresh_report(engine, pid: int) -> dict:
    """The report from a full scan with nothing kept: every interval computed from nothing."""
    with engine.connect() as conn:
        full = scan_reviews(conn, project_id=pid, rubric_body=store_projects.latest_rubric(conn, project_id=pid))
        assert not full.intervals
        return json.loads(json.dumps(agreement_report(conn, project_id=pid, min_overlap=3, scan=full)))


def _stored(engine, pid: int) -> dict:
    with engine.connect() as conn:
        found = scanstate.load(conn, project_id=pid)
    assert found is not None
    return _unpack(found.body)


def test_the_intervals_are_kept_and_only_changed_tables_are_worked_out_again(engine, project, db_url, counted):
    pid = project["id"]
    reviewdata.build(engine, pid, n_items=60, seed=5, reviewers=REVIEWERS)
    runner = CliRunner()

    def agreement() -> dict:
        out = runner.invoke(app, ["agreement", "--json", "--db", db_url, "--min-overlap", "3"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    first = agreement()
    k = len(reviewdata.DIMS)
    n_pairs = len(first["pairs"])
    assert n_pairs > 5 and sum(counted) == n_pairs * k  # nothing kept yet: every table worked out
    assert len(_stored(engine, pid)["intervals"]) == n_pairs * k
    counted.clear()
    assert agreement() == first == _fresh_report(engine, pid)
    assert sum(counted) == n_pairs * k  # the fresh report above, from nothing; the CLI's second run took none

    with engine.connect() as conn:
        before = {p: c.copy() for p, c in kept.current_scan(conn, project_id=pid).pair_confusion.items()}
    add_round(engine, pid, random.Random(16), 0)
    with engine.connect() as conn:
        after = kept.current_scan(conn, project_id=pid).pair_confusion
    chosen = {(a, b) for a, b in after if int(after[(a, b)].sum(axis=(1, 2)).max()) >= 3}
    changed = _changed_tables({p: before[p] for p in before if p in chosen}, {p: after[p] for p in chosen}, k)
    assert 0 < changed < len(chosen) * k, "a round changes some pairs' tables, not all"
    counted.clear()
    third = agreement()
    assert sum(counted) == changed  # only the tables that changed
    assert third != first and third == _fresh_report(engine, pid)


def test_a_state_without_intervals_or_with_broken_ones(engine, project, db_url):
    pid = project["id"]
    reviewdata.build(engine, pid, n_items=40, seed=8, reviewers=REVIEWERS)
    runner = CliRunner()
    assert runner.invoke(app, ["agreement", "--json", "--db", db_url, "--min-overlap", "3"]).exit_code == 0
    body = _stored(engine, pid)
    assert body["intervals"]
    # a state stored before the intervals were kept decodes, and gets them on the next report
    del body["intervals"]
    with engine.begin() as conn:
        conn.execute(scan_states.update().where(scan_states.c.project_id == pid).values(body=_pack(body)))
    out = runner.invoke(app, ["agreement", "--json", "--db", db_url, "--min-overlap", "3"])
    assert out.exit_code == 0 and json.loads(out.output) == _fresh_report(engine, pid)
    body = _stored(engine, pid)
    assert body["intervals"]
    # a broken interval is a corrupt state: rebuilt, and the report is still the fresh one
    body["intervals"][0][4] = "not a number"
    with engine.begin() as conn:
        conn.execute(scan_states.update().where(scan_states.c.project_id == pid).values(body=_pack(body)))
    with engine.connect() as conn:
        assert kept.bring_up_to_date(conn, project_id=pid).rebuilt
    out = runner.invoke(app, ["agreement", "--json", "--db", db_url, "--min-overlap", "3"])
    assert out.exit_code == 0 and json.loads(out.output) == _fresh_report(engine, pid)
