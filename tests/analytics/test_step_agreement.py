"""Agreement on step marks: Krippendorff's α (nominal, ok/error) over the steps two reviewers or more judged,
and the share of flagged steps a second reviewer flagged too — equal to the `krippendorff` package on random
data with missing judgments, and what `clinreason agreement --json`, the dashboard and the card report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from analytics import reviewdata
from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.step_agreement import step_agreement, step_judgments

krippendorff = pytest.importorskip("krippendorff")

TOL = 1e-9
NONE = {"alpha_nominal": None, "units": 0, "both_flagged_share": None}


def _versions_from_matrix(grid: np.ndarray, steps_per_version: int) -> list[list[list[tuple[int, str]]]]:
    """Cut a raters × units matrix (0 ok, 1 error, NaN missing) into versions of `steps_per_version` steps:
    per version, per rater, the (step, verdict) marks that rater gave."""
    raters, n_units = grid.shape
    versions = []
    for start in range(0, n_units, steps_per_version):
        reviews = []
        for r in range(raters):
            marks = [(k + 1, "error" if grid[r, start + k] == 1 else "ok")
                     for k in range(min(steps_per_version, n_units - start)) if not math.isnan(grid[r, start + k])]
            reviews.append(marks)
        versions.append(reviews)
    return versions


def _expected_share(grid: np.ndarray) -> float | None:
    judged = (~np.isnan(grid)).sum(axis=0)
    errors = np.nansum(grid, axis=0)
    pairable = judged >= 2
    flagged = pairable & (errors >= 1)
    return float((pairable & (errors >= 2)).sum() / flagged.sum()) if flagged.any() else None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_alpha_on_steps_equals_the_krippendorff_package_with_missing_judgments(seed):
    rng = np.random.default_rng(seed)
    raters = int(rng.integers(2, 6))
    n_units = int(rng.integers(20, 300))
    truth = rng.random(n_units) < rng.uniform(0.1, 0.5)
    noise = rng.uniform(0.05, 0.4)
    grid = np.where(rng.random((raters, n_units)) < noise, ~truth, truth).astype(np.float64)
    grid[rng.random((raters, n_units)) < rng.uniform(0.2, 0.7)] = np.nan  # judgments nobody gave
    units = sum((step_judgments(reviews) for reviews in _versions_from_matrix(grid, int(rng.integers(1, 8)))),
                start=step_judgments([]))
    got = step_agreement(units)
    expected = krippendorff.alpha(reliability_data=grid, level_of_measurement="nominal")
    assert got["alpha_nominal"] == pytest.approx(expected, abs=TOL)
    assert got["units"] == int(((~np.isnan(grid)).sum(axis=0) >= 2).sum())
    share = _expected_share(grid)
    assert got["both_flagged_share"] == (None if share is None else pytest.approx(share, abs=TOL))


def test_a_small_case_by_hand():
    # version with 4 steps, three reviewers:
    #   step 1: ok, ok, ok        step 2: error, error, —      step 3: error, ok, —      step 4: ok, —, —
    reviews = [[(1, "ok"), (2, "error"), (3, "error"), (4, "ok")], [(1, "ok"), (2, "error"), (3, "ok")], [(1, "ok")]]
    units = step_judgments(reviews)
    assert units == {(3, 0): 1, (0, 2): 1, (1, 1): 1, (1, 0): 1}
    got = step_agreement(units)
    # pairable values: ok×3, error×2, ok+error: n = 7, n_ok = 4, n_error = 3; observed disagreement from the
    # mixed unit only: 2·1·1/(2−1) = 2 coincidences; α = 1 − (n−1)·2 / (2·n_ok·n_error) = 1 − 12/24
    assert got == {"alpha_nominal": pytest.approx(0.5), "units": 3, "both_flagged_share": pytest.approx(0.5)}


def test_no_figures_without_doubly_judged_steps():
    assert step_agreement(step_judgments([])) == NONE
    assert step_agreement(step_judgments([[(1, "error"), (2, "ok")], [(3, "ok")]])) == NONE
    everybody_agrees_ok = step_agreement(step_judgments([[(1, "ok"), (2, "ok")], [(1, "ok"), (2, "ok")]]))
    assert everybody_agrees_ok == {"alpha_nominal": None, "units": 2, "both_flagged_share": None}


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """The CLI, run in an empty folder with no clinreason environment variables."""
    from clinreason.cli import app

    monkeypatch.chdir(tmp_path)
    for var in ("CLINREASON_DB", "CLINREASON_PROJECT", "CLINREASON_CONFIG", "CLINREASON_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return lambda *args: CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def marked(engine, project):
    return reviewdata.build(engine, project["id"], n_items=50, seed=9, step_judge_rate=0.6)


def test_the_report_reads_the_stored_marks(engine, project, marked):
    with engine.connect() as conn:
        steps = agreement_report(conn, project_id=project["id"], resamples=50)["steps"]
    grid = np.array(reviewdata.step_matrix(marked))
    assert steps["units"] == int(((~np.isnan(grid)).sum(axis=0) >= 2).sum()) > 20
    assert steps["alpha_nominal"] == pytest.approx(
        krippendorff.alpha(reliability_data=grid, level_of_measurement="nominal"), abs=TOL)
    assert steps["both_flagged_share"] == pytest.approx(_expected_share(grid), abs=TOL)
    assert 0 < steps["alpha_nominal"] < 1  # the factory's reviewers agree more than chance, not always


def test_agreement_json_prints_the_steps_block(engine, project, marked, db_url, cli):
    result = cli("agreement", "--json", "--resamples", "50", "--db", db_url)
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)["steps"]
    assert set(steps) == {"alpha_nominal", "units", "both_flagged_share"}
    with engine.connect() as conn:
        assert steps == agreement_report(conn, project_id=project["id"], resamples=50)["steps"]
    text = cli("agreement", "--resamples", "50", "--db", db_url).output
    assert f"step marks: α nominal (ok/error) {steps['alpha_nominal']:.3f} on {steps['units']} steps" in text


def test_reviews_without_marks_give_null_figures(engine, project, db_url, cli):
    reviewdata.build(engine, project["id"], n_items=10, seed=2)
    result = cli("agreement", "--json", "--resamples", "20", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"] == NONE


def test_the_dashboard_context_and_the_card_quote_the_same_figures(engine, project, marked, tmp_path):
    from clinreason.analytics.charts import dashboard_context
    from clinreason.stages.export import ExportOptions, run_export

    with engine.connect() as conn:
        steps = dashboard_context(conn, project["id"], resamples=50)["agreement"]["steps"]
    run_export(engine, project="default", out=tmp_path / "ds", opts=ExportOptions())
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert (f"{steps['units']} such steps): Krippendorff's α (nominal, ok/error) {steps['alpha_nominal']:.3f}; "
            f"of the steps one expert flagged as an error, {100 * steps['both_flagged_share']:.1f} %") in card
    machine = json.loads(card.split("```json", 1)[1].split("```", 1)[0])
    assert machine["agreement"]["steps"]["units"] == steps["units"]
    assert machine["agreement"]["steps"]["alpha_nominal"] == pytest.approx(steps["alpha_nominal"])

