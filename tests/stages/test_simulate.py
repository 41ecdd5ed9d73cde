"""The simulator drives the real assignment and consensus code: small runs, checked for sense."""

from __future__ import annotations

import json

import pytest

from clinreason.stages.simulate import run_simulation


@pytest.mark.parametrize("policy", ["fixed-1", "fixed-2", "adaptive"])
def test_every_item_ends_decided_and_the_figures_add_up(policy, tmp_path):
    r = run_simulation(policy=policy, n_items=40, seed=3, workdir=tmp_path)
    d = r.to_dict()
    assert d["accepted"] + d["excluded"] == 40 and r.escalated_left == 0
    assert d["reviews"] >= d["accepted"] * (1 if policy != "fixed-2" else 2) * 0.9
    assert 0 <= d["residual_defect_rate"] <= 1 and d["wrongly_excluded"] >= 0
    assert d["reviews_per_accepted"] == pytest.approx((d["reviews"] + d["adjudications"]) / d["accepted"], abs=1e-3)


def test_same_seed_same_result(tmp_path):
    a = run_simulation(policy="fixed-1", n_items=30, seed=11, workdir=tmp_path / "a")
    b = run_simulation(policy="fixed-1", n_items=30, seed=11, workdir=tmp_path / "b")
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def test_two_reviewers_catch_more_defects_than_one(tmp_path):
    one = run_simulation(policy="fixed-1", n_items=150, seed=5, workdir=tmp_path).to_dict()
    two = run_simulation(policy="fixed-2", n_items=150, seed=5, workdir=tmp_path).to_dict()
    assert two["residual_defect_rate"] < one["residual_defect_rate"]
    assert two["reviews_per_accepted"] > one["reviews_per_accepted"]


def test_cli_prints_the_design_keys(tmp_path):
    from typer.testing import CliRunner

    from clinreason.cli import app

    out = CliRunner().invoke(app, ["simulate", "--policy", "fixed-2", "--items", "20", "--seed", "1", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert {"reviews_per_accepted", "residual_defect_rate", "wrongly_excluded"} <= d.keys()
