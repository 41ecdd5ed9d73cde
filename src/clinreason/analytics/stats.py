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

from sqlalchemy import Connection, and_, case, func, select

from clinreason.analytics.scan import ReviewScan, counter_median, scan_reviews
from clinreason.store import repository as repo
from clinreason.store.tables import decisions, item_sources, items, rationales, reviews

ACCEPTED_KINDS = ("consensus", "adjudication")
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
        rows.append({
            "reviewer": t.pseudonym,
            "username": t.username,
            "role": t.role,
            "specialties": t.specialties,
            "reviews": t.reviews,
            "median_seconds": None if not t.seconds else round(counter_median(t.seconds), 3),
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
    from clinreason.stages import calibration
    from clinreason.stages.consensus import evidence_model

    model = evidence_model(conn, project_id)
    probes = calibration.results(conn, project_id=project_id)
    for row in rows:
        rates = model.sources.get(row["username"])
        row["reliability"] = round(rates.accuracy, 4) if rates else None
        row["sensitivity"] = round(rates.sensitivity, 4) if rates else None
        row["specificity"] = round(rates.specificity, 4) if rates else None
        found = probes.get(row["username"])
        row["calibration"] = {"reviews": found["reviews"], "correct": found["correct"]} if found else None
    return rows


def _accepted(project_id: int):
    return and_(items.c.project_id == project_id, items.c.state == "accepted",
                decisions.c.kind.in_(ACCEPTED_KINDS), decisions.c.rationale_id.is_not(None))


def process_stats(conn: Connection, *, project_id: int, expert_seconds: float | None = None) -> dict[str, Any]:
    """Project-level numbers, all by SQL aggregates (constant memory at any size)."""
    status = repo.status_counts(conn, project_id=project_id)
    accepted_join = items.join(decisions, decisions.c.item_id == items.c.id)
    accepted = conn.execute(select(func.count()).select_from(accepted_join).where(_accepted(project_id))).scalar_one()

    per_item = (select(reviews.c.item_id, func.count(func.distinct(reviews.c.rationale_id)).label("rounds"))
                .group_by(reviews.c.item_id).subquery())
    hist_rows = conn.execute(
        select(func.coalesce(per_item.c.rounds, 0).label("r"), func.count())
        .select_from(accepted_join.outerjoin(per_item, per_item.c.item_id == items.c.id))
        .where(_accepted(project_id)).group_by("r").order_by("r")).all()
    rounds_hist = {int(r): int(n) for r, n in hist_rows}
    total_rounds = sum(r * n for r, n in rounds_hist.items())

    as_counts = dict.fromkeys(ACCEPTED_AS, 0)
    for kind, origin, n in conn.execute(
            select(decisions.c.kind, rationales.c.origin, func.count())
            .select_from(accepted_join.join(rationales, rationales.c.id == decisions.c.rationale_id))
            .where(_accepted(project_id)).group_by(decisions.c.kind, rationales.c.origin)):
        key = accepted_as(kind, origin)
        as_counts[key] = as_counts.get(key, 0) + int(n)

    if expert_seconds is None:
        expert_seconds = float(conn.execute(
            select(func.coalesce(func.sum(reviews.c.seconds_spent), 0.0))
            .select_from(reviews.join(items, items.c.id == reviews.c.item_id))
            .where(items.c.project_id == project_id)).scalar_one())
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
        "by_specialty": _breakdown(conn, project_id, "specialty"),
        "by_source": _breakdown(conn, project_id, "source"),
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


def _breakdown(conn: Connection, project_id: int, by: str) -> dict[str, dict[str, Any]]:
    """Items, accepted, excluded, reviews and mean rounds per specialty (items.specialty) or per source."""
    if by == "specialty":
        key = func.coalesce(items.c.specialty, "(none)")
        base = items
    else:
        key = item_sources.c.source
        base = items.join(item_sources, item_sources.c.item_id == items.c.id)
    is_acc = case((items.c.state == "accepted", 1), else_=0)
    is_exc = case((items.c.state == "excluded", 1), else_=0)
    out: dict[str, dict[str, Any]] = {}
    for k, n, acc, exc in conn.execute(
            select(key.label("k"), func.count(func.distinct(items.c.id)), func.sum(is_acc), func.sum(is_exc))
            .select_from(base).where(items.c.project_id == project_id).group_by("k").order_by("k")):
        out[str(k)] = {"items": int(n), "accepted": int(acc or 0), "excluded": int(exc or 0)}
    per_item = (select(reviews.c.item_id, func.count().label("n_reviews"),
                       func.count(func.distinct(reviews.c.rationale_id)).label("rounds"))
                .group_by(reviews.c.item_id).subquery())
    for k, n_reviews, rounds_sum, accepted_rounds in conn.execute(
            select(key.label("k"), func.sum(per_item.c.n_reviews), func.sum(per_item.c.rounds),
                   func.sum(case((items.c.state == "accepted", per_item.c.rounds), else_=0)))
            .select_from(base.join(per_item, per_item.c.item_id == items.c.id))
            .where(items.c.project_id == project_id).group_by("k")):
        entry = out.setdefault(str(k), {"items": 0, "accepted": 0, "excluded": 0})
        entry["reviews"] = int(n_reviews or 0)
        entry["mean_rounds_accepted"] = (round(int(accepted_rounds or 0) / entry["accepted"], 6)
                                         if entry["accepted"] else None)
    for entry in out.values():
        entry.setdefault("reviews", 0)
        entry.setdefault("mean_rounds_accepted", 0.0 if entry["accepted"] else None)
    return out


def project_stats(conn: Connection, *, project_id: int, rubric_body: dict[str, Any] | None = None,
                  scan: ReviewScan | None = None) -> dict[str, Any]:
    """What `clinreason stats --json` prints: {"project": …, "reviewers": […]}."""
    if scan is None:
        body = rubric_body or repo.latest_rubric(conn, project_id=project_id)
        scan = scan_reviews(conn, project_id=project_id, rubric_body=body)
    return {"project": process_stats(conn, project_id=project_id, expert_seconds=scan.total_seconds),
            "reviewers": with_reliability(conn, project_id, reviewer_table(scan))}
