"""Reviewer and process statistics: what `clinreason stats --json` prints, the dashboard shows and the
dataset card quotes.

Definitions (the card repeats them):
- *rounds* of an item: the number of its rationale versions that experts reviewed;
- *accepted as*: `drafted` (the accepted version is the model's first-generation draft), `edited` (an expert's
  edit), `regenerated` (a guided or automatic regeneration), `adjudication` (decided by an adjudicator);
- *leniency* of a reviewer: mean over shared versions of (their mean score − the other reviewers' mean score);
- *agreement with adjudicators*: on items an adjudicator decided, the share of the reviewer's verdicts that
  match the outcome (accept for the version the adjudicator kept, anything else for the others).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from clinreason.analytics.kept import current_scan
from clinreason.analytics.reliability import calibration_results, evidence_model
from clinreason.analytics.scan import ReviewScan, counter_median
from clinreason.store import stats as stats_store
from clinreason.store.projects import latest_rubric
from clinreason.store.readmodels import status_counts

ACCEPTED_KINDS = stats_store.ACCEPTED_KINDS
ACCEPTED_AS = ("drafted", "edited", "regenerated", "adjudication")


def _share(n: int | float, total: int | float) -> float | None:
    return round(n / total, 6) if total else None


def accepted_as(kind: str, origin: str) -> str:
    if kind == "adjudication" or origin == "adjudicated":
        return "adjudication"
    return {"generated": "drafted", "edited": "edited", "regenerated": "regenerated"}.get(origin, origin)


def reviewer_table(scan: ReviewScan) -> list[dict[str, Any]]:
    rows = []
    for t in sorted(scan.reviewers.values(), key=lambda t: (-t.reviews, t.username)):
        median = counter_median(t.seconds)
        rows.append({
            "reviewer": t.pseudonym,
            "username": t.username,
            "role": t.role,
            "specialties": t.specialties,
            "reviews": t.reviews,
            "median_seconds": None if median is None else round(median, 3),
            "acceptance_rate": _share(t.accepts, t.reviews),
            "leniency": round(t.leniency_sum / t.leniency_units, 6) if t.leniency_units else None,
            "shared_units": t.leniency_units,
            "agreement_with_adjudicators": _share(t.adjudicator_agreed, t.adjudicated),
            "adjudicated_reviews": t.adjudicated,
        })
    return rows


def with_reliability(conn: Connection, project_id: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each reviewer's estimated reliability (the Dawid–Skene fit that adaptive allocation uses:
    balanced accuracy, sensitivity, specificity) and their calibration results to the reviewer rows."""
    model = evidence_model(conn, project_id)
    probes = calibration_results(conn, project_id=project_id)
    for row in rows:
        rates = model.sources.get(row["username"])
        row["reliability"] = round(rates.accuracy, 4) if rates else None
        row["sensitivity"] = round(rates.sensitivity, 4) if rates else None
        row["specificity"] = round(rates.specificity, 4) if rates else None
        found = probes.get(row["username"])
        row["calibration"] = {"reviews": found["reviews"], "correct": found["correct"]} if found else None
    return rows


def process_stats(conn: Connection, *, project_id: int, expert_seconds: float | None = None,
                  status: dict[str, Any] | None = None) -> dict[str, Any]:
    """Project-level numbers, all by SQL aggregates (constant memory at any size). Pass `status` (what
    `status_counts` returned on this connection) to reuse it."""
    if status is None:
        status = status_counts(conn, project_id=project_id)
    # the accepted counts, rounds, origins and both breakdowns: from the tallies the triggers keep (migration
    # 0015), or else one pass over the items and one per source breakdown
    kept = stats_store.tallies_kept(conn)
    groups = (stats_store.kept_item_groups if kept else stats_store.item_groups)(conn, project_id=project_id)
    rollup = stats_store.ItemRollup(groups)
    if kept:
        source_items, source_reviews = stats_store.kept_source_breakdowns(conn, project_id=project_id)
    else:
        source_items = stats_store.item_breakdown(conn, project_id=project_id, by="source")
        source_reviews = stats_store.review_breakdown(conn, project_id=project_id, by="source")
    accepted = rollup.accepted_count()
    rounds_hist = rollup.accepted_rounds()
    total_rounds = sum(r * n for r, n in rounds_hist.items())

    as_counts = dict.fromkeys(ACCEPTED_AS, 0)
    for row in rollup.accepted_origins():
        key = accepted_as(row.kind, row.origin)
        as_counts[key] = as_counts.get(key, 0) + row.items

    if expert_seconds is None:
        expert_seconds = stats_store.expert_seconds(conn, project_id=project_id)
    excluded = status["by_state"].get("excluded", 0)
    return {
        "items": status["items"],
        "by_state": status["by_state"],
        "accepted": accepted,
        "excluded": excluded,
        "rounds": {
            "histogram": {str(r): n for r, n in rounds_hist.items()},
            "mean": round(total_rounds / accepted, 6) if accepted else None,
            "median": _median_from_hist(rounds_hist),
            "max": max(rounds_hist) if rounds_hist else None,
        },
        "accepted_as": as_counts,
        "accepted_as_share": {k: _share(n, accepted) for k, n in as_counts.items()},
        "llm": {"tokens": status["tokens"], "cost_usd": status["cost_usd"], "by_model": status["by_model"]},
        "expert_minutes": round(expert_seconds / 60.0, 3),
        "expert_minutes_per_accepted": round(expert_seconds / 60.0 / accepted, 6) if accepted else None,
        "by_specialty": _breakdown(rollup.item_breakdown(), rollup.review_breakdown()),
        "by_source": _breakdown(source_items, source_reviews),
    }


def _median_from_hist(hist: dict[int, int]) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    ordered = sorted(hist.items())

    def nth(k: int) -> int:
        seen = 0
        for value, n in ordered:
            seen += n
            if k < seen:
                return value
        return ordered[-1][0]

    return (nth((total - 1) // 2) + nth(total // 2)) / 2.0


def _breakdown(item_rows: list[stats_store.ItemBreakdown],
               review_rows: list[stats_store.ReviewBreakdown]) -> dict[str, dict[str, Any]]:
    """Items, accepted, excluded, reviews and mean rounds per specialty (items.specialty) or per source."""
    out: dict[str, dict[str, Any]] = {}
    for row in item_rows:
        out[row.key] = {"items": row.items, "accepted": row.accepted, "excluded": row.excluded}
    for rev in review_rows:
        entry = out.setdefault(rev.key, {"items": 0, "accepted": 0, "excluded": 0})
        entry["reviews"] = rev.reviews
        entry["mean_rounds_accepted"] = (round(rev.accepted_rounds / entry["accepted"], 6)
                                         if entry["accepted"] else None)
    for entry in out.values():
        entry.setdefault("reviews", 0)
        entry.setdefault("mean_rounds_accepted", 0.0 if entry["accepted"] else None)
    return out


def project_stats(conn: Connection, *, project_id: int, rubric_body: dict[str, Any] | None = None,
                  scan: ReviewScan | None = None) -> dict[str, Any]:
    """What `clinreason stats --json` prints: {"project": …, "reviewers": […]}."""
    if scan is None:
        body = rubric_body or latest_rubric(conn, project_id=project_id)
        scan = current_scan(conn, project_id=project_id, rubric_body=body)
    return {"project": process_stats(conn, project_id=project_id, expert_seconds=scan.total_seconds),
            "reviewers": with_reliability(conn, project_id, reviewer_table(scan))}
