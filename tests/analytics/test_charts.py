"""The dashboard's charts: well-formed SVG a person can read (titles, labels, the numbers themselves),
built from the same numbers `agreement --json` and `stats --json` print."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from analytics import reviewdata
from clinreason.analytics.charts import bar_chart, ci_chart, dashboard_context, reviewer_table_html

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.find(f"{SVG}title").text
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}text") if t.text]


def test_dashboard_context_has_every_panel(engine, project):
    built = reviewdata.build(engine, project["id"], n_items=40, seed=2)
    with engine.connect() as conn:
        ctx = dashboard_context(conn, project["id"], resamples=100)
    assert ctx["status"]["items"] == 40
    charts = ctx["charts"]
    agreement = parse(charts["agreement"])
    labels = texts(agreement)
    for dim, block in ctx["agreement"]["dimensions"].items():
        assert dim in labels
        assert f"{block['alpha_ordinal']:.2f}" in labels
    rounds = parse(charts["rounds"])
    for k, n in ctx["stats"]["rounds"]["histogram"].items():
        assert k in texts(rounds) and str(n) in texts(rounds)
    progress = ctx["progress"]["accepted_cumulative"]
    assert progress[-1][1] == len(built.accepted)
    assert sum(n for _, n in ctx["progress"]["reviews_per_day"]) == len(built.reviews)
    parse(charts["progress"])
    for dim in reviewdata.DIMS:
        dist = ctx["score_distributions"][dim]
        assert sum(dist.values()) == sum(1 for r in built.reviews if dim in r["scores"])
        assert set(texts(parse(charts["scores"][dim]))) >= set(dist)
    parse(charts["accepted_as"])
    table = ET.fromstring(str(ctx["reviewer_table"]))
    assert len(table.findall("./tbody/tr")) == 4
    assert "alice" in str(ctx["reviewer_table"])


def test_charts_of_an_empty_project_say_so(engine, project):
    with engine.connect() as conn:
        ctx = dashboard_context(conn, project["id"], resamples=10)
    assert "no data yet" in texts(parse(ctx["charts"]["progress"]))
    assert "not enough overlapping reviews yet" in texts(parse(ctx["charts"]["agreement"]))
    assert "no reviews yet" in str(ctx["reviewer_table"])


def test_labels_are_escaped():
    chart = bar_chart("<script>alert(1)</script>", ["<b>"], [3])
    assert "<script>" not in chart and "&lt;script&gt;" in chart
    parse(chart)
    parse(ci_chart("α & κ", [("a<b", 0.5, [0.4, 0.6]), ("none", None, None)]))
    html = reviewer_table_html([{"username": "<img src=x>", "reviewer": "R-00000000", "role": "reviewer",
                                 "reviews": 1, "median_seconds": 10.0, "acceptance_rate": 1.0, "leniency": -0.5,
                                 "agreement_with_adjudicators": None, "adjudicated_reviews": 0}])
    assert "<img" not in html and "&lt;img" in html


@pytest.mark.parametrize("values", [[], [0, 0]])
def test_bar_chart_without_data(values):
    assert "no data yet" in texts(parse(bar_chart("Rounds", [str(i) for i in range(len(values))], values)))
