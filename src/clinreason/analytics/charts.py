"""Server-rendered charts for the admin dashboard: plain SVG strings (no script, no CDN), readable at a
glance, accessible (role="img", a <title>, text labels), and `dashboard_context()` with everything the
/dashboard page shows. The strings are `markupsafe.Markup`, so Jinja2 templates insert them as is.

Charts: progress over time (cumulative accepted items, reviews per day), score distribution per rubric
dimension, agreement with 95 % CIs (against Krippendorff's 0.667 / 0.8 marks), rounds histogram, and the
reviewer table (HTML).

Every text a chart shows is marked with `N_` and passed through `translate` (the web app gives its
`i18n.gettext`, so the charts follow the page's language; the default leaves them in English).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from html import escape
from typing import Any, Sequence

from markupsafe import Markup
from sqlalchemy import Connection

from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.kept import current_scan
from clinreason.analytics.scan import ReviewScan, rubric_dimensions
from clinreason.analytics.stats import process_stats, reviewer_table, with_reliability
from clinreason.domain.messages import N_
from clinreason.domain.rubric import rubric_from_dict
from clinreason.store import stats as stats_store
from clinreason.store.projects import latest_rubric
from clinreason.store.readmodels import status_counts

W, H = 560, 220
PAD_L, PAD_R, PAD_T, PAD_B = 48, 16, 28, 36
COLORS = {"main": "#2563eb", "second": "#16a34a", "muted": "#9ca3af", "warn": "#d97706", "grid": "#e5e7eb",
          "text": "#111827"}
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
Translate = Callable[[str], str]


def _english(message: str) -> str:
    return message


def _svg(title: str, body: list[str], width: int = W, height: int = H) -> Markup:
    t = escape(title)
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
                  f'role="img" aria-label="{t}" class="chart"><title>{t}</title>'
                  f'<text x="{PAD_L}" y="16" {FONT} font-weight="600" fill="{COLORS["text"]}">{t}</text>'
                  + "".join(body) + "</svg>")


def _empty(title: str, message: str = N_("no data yet")) -> Markup:
    return _svg(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" {FONT} fill="{COLORS["muted"]}">'
                        f"{escape(message)}</text>"])


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    return float(((int(value) // step) + 1) * step)


def _y_axis(top: float, *, plot_h: float, ticks: int = 4, fmt=lambda v: f"{v:g}") -> list[str]:
    out = []
    for i in range(ticks + 1):
        v = top * i / ticks
        y = PAD_T + plot_h - plot_h * i / ticks
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLORS["grid"]}"/>'
                   f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT} fill="{COLORS["muted"]}">'
                   f"{escape(fmt(v))}</text>")
    return out


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], *, color: str = COLORS["main"],
              value_fmt=lambda v: f"{v:g}", empty: str = N_("no data yet")) -> Markup:
    """Vertical bars with their value on top (score distributions, rounds histogram)."""
    if not values or not any(values):
        return _empty(title, empty)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    top = _nice_max(max(values))
    slot = plot_w / len(values)
    body = _y_axis(top, plot_h=plot_h)
    for i, (label, v) in enumerate(zip(labels, values)):
        h = plot_h * v / top
        x = PAD_L + i * slot + slot * 0.15
        y = PAD_T + plot_h - h
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{color}">'
                    f"<title>{escape(str(label))}: {escape(value_fmt(v))}</title></rect>"
                    f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle" {FONT} '
                    f'fill="{COLORS["text"]}">{escape(value_fmt(v))}</text>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" {FONT} '
                    f'fill="{COLORS["text"]}">{escape(str(label))}</text>')
    return _svg(title, body)


def line_chart(title: str, points: Sequence[tuple[str, float]], *, second: Sequence[tuple[str, float]] = (),
               legend: tuple[str, str] = ("", ""), empty: str = N_("no data yet")) -> Markup:
    """One or two series over dates ("YYYY-MM-DD"), x spaced by calendar day."""
    if not points and not second:
        return _empty(title, empty)
    days = sorted({d for d, _ in points} | {d for d, _ in second})
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    span = max((last - first).days, 1)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    top = _nice_max(max([v for _, v in points] + [v for _, v in second] + [1]))
    body = _y_axis(top, plot_h=plot_h)

    def path(series, color):
        coords = [(PAD_L + plot_w * (date.fromisoformat(d) - first).days / span, PAD_T + plot_h - plot_h * v / top)
                  for d, v in series]
        if len(coords) == 1:
            return f'<circle cx="{coords[0][0]:.1f}" cy="{coords[0][1]:.1f}" r="3" fill="{color}"/>'
        return (f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')

    if points:
        body.append(path(points, COLORS["main"]))
    if second:
        body.append(path(second, COLORS["second"]))
    body.append(f'<text x="{PAD_L}" y="{H - 8}" {FONT} fill="{COLORS["muted"]}">{escape(days[0])}</text>'
                f'<text x="{W - PAD_R}" y="{H - 8}" text-anchor="end" {FONT} fill="{COLORS["muted"]}">'
                f"{escape(days[-1])}</text>")
    for i, (name, color) in enumerate(zip(legend, (COLORS["main"], COLORS["second"]))):
        if name:
            x = W - PAD_R - 200 + i * 100
            body.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>'
                        f'<text x="{x + 14}" y="17" {FONT} fill="{COLORS["text"]}">{escape(name)}</text>')
    return _svg(title, body)


def ci_chart(title: str, rows: Sequence[tuple[str, float | None, list[float] | None]],
             *, marks: Sequence[float] = (0.667, 0.8), empty: str = N_("not enough overlapping reviews yet")) -> Markup:
    """Horizontal estimate + 95 % CI whiskers on a −0.2…1 axis, with reference marks (α thresholds)."""
    rows = list(rows)
    if not rows or all(est is None for _, est, _ in rows):
        return _empty(title, empty)
    lo_axis, hi_axis = -0.2, 1.0
    left, right = 120, W - PAD_R
    row_h = 24
    height = PAD_T + row_h * len(rows) + 28

    def x(v: float) -> float:
        v = min(max(v, lo_axis), hi_axis)
        return left + (right - left) * (v - lo_axis) / (hi_axis - lo_axis)

    body = []
    for tick in (-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        body.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{PAD_T}" y2="{height - 24}" '
                    f'stroke="{COLORS["grid"]}"/><text x="{x(tick):.1f}" y="{height - 10}" text-anchor="middle" '
                    f'{FONT} fill="{COLORS["muted"]}">{tick:g}</text>')
    for m in marks:
        body.append(f'<line x1="{x(m):.1f}" x2="{x(m):.1f}" y1="{PAD_T}" y2="{height - 24}" stroke="{COLORS["warn"]}" '
                    f'stroke-dasharray="4 3"><title>{m:g}</title></line>')
    for i, (label, est, ci) in enumerate(rows):
        y = PAD_T + row_h * i + row_h / 2
        body.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" {FONT} fill="{COLORS["text"]}">'
                    f"{escape(label)}</text>")
        if est is None:
            body.append(f'<text x="{left + 4}" y="{y + 4:.1f}" {FONT} fill="{COLORS["muted"]}">—</text>')
            continue
        if ci:
            body.append(f'<line x1="{x(ci[0]):.1f}" x2="{x(ci[1]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                        f'stroke="{COLORS["main"]}" stroke-width="2"/>')
        tip = f"{label}: {est:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        body.append(f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="4" fill="{COLORS["main"]}"><title>{escape(tip)}'
                    f'</title></circle><text x="{right}" y="{y + 4:.1f}" text-anchor="end" {FONT} '
                    f'fill="{COLORS["text"]}">{est:.2f}</text>')
    return _svg(title, body, height=int(height))


def reviewer_table_html(rows: Sequence[dict[str, Any]], *, translate: Translate = _english) -> Markup:
    t = translate

    def num(v, digits=2, pct=False):
        if v is None:
            return "—"
        return f"{100 * v:.0f} %" if pct else f"{v:.{digits}f}"

    columns = [(N_("reviewer"), None), (N_("id"), None), (N_("role"), None), (N_("reviews"), None),
               (N_("median s / review"), None), (N_("accepts"), None), (N_("leniency"), None),
               (N_("agrees with adjudicators"), None),
               (N_("estimated reliability"), N_("balanced accuracy estimated from all reviews, adjudications and "
                                                "calibration items (sensitivity / specificity)")),
               (N_("calibration"), N_("calibration items whose known truth the reviewer matched"))]
    head = "<thead><tr>" + "".join(
        f'<th title="{escape(t(tip))}">{escape(t(label))}</th>' if tip else f"<th>{escape(t(label))}</th>"
        for label, tip in columns) + "</tr></thead>"
    body = []
    for r in rows:
        body.append(f"<tr><td>{escape(r['username'])}</td><td><code>{escape(r['reviewer'])}</code></td>"
                    f"<td>{escape(t(r['role']))}</td><td class=\"num\">{r['reviews']}</td>"
                    f"<td class=\"num\">{num(r['median_seconds'], 0)}</td>"
                    f"<td class=\"num\">{num(r['acceptance_rate'], pct=True)}</td>"
                    f"<td class=\"num\">{'' if r['leniency'] is None or r['leniency'] < 0 else '+'}"
                    f"{num(r['leniency'])}</td>"
                    f"<td class=\"num\">{num(r['agreement_with_adjudicators'], pct=True)}"
                    f" <small>({r['adjudicated_reviews']})</small></td>"
                    f"<td class=\"num\">{_reliability_cell(r)}</td><td class=\"num\">{_calibration_cell(r, t)}</td></tr>")
    if not body:
        body.append(f'<tr><td colspan="10">{escape(t(N_("no reviews yet")))}</td></tr>')
    return Markup(f'<table class="reviewers">{head}<tbody>{"".join(body)}</tbody></table>')


def _reliability_cell(row: dict[str, Any]) -> str:
    if row.get("reliability") is None:
        return "—"
    return (f"{row['reliability']:.2f} <small>({row['sensitivity']:.2f} / {row['specificity']:.2f})</small>")


def _calibration_cell(row: dict[str, Any], translate: Translate = _english) -> str:
    found = row.get("calibration")
    return "—" if not found else translate(N_("{correct} of {reviews}")).format(correct=found["correct"],
                                                                                reviews=found["reviews"])


def progress_series(conn: Connection, project_id: int) -> dict[str, list[tuple[str, int]]]:
    accepted = [(d.day, d.count) for d in stats_store.decisions_per_day(conn, project_id=project_id)]
    per_day = [(d.day, d.count) for d in stats_store.reviews_per_day(conn, project_id=project_id)]
    total, cumulative = 0, []
    for d, n in accepted:
        total += n
        cumulative.append((d, total))
    return {"accepted_cumulative": cumulative, "reviews_per_day": per_day}


def dashboard_context(conn: Connection, project_id: int, *, resamples: int = 500,
                      translate: Translate = _english, language: str = "en",
                      scan: ReviewScan | None = None) -> dict[str, Any]:
    """Everything the admin /dashboard page needs: numbers (status, agreement, stats, reviewers, series), the
    rubric (its dimensions' titles in every language it gives) and the rendered charts (`charts[...]` SVG,
    `reviewer_table` HTML), their texts passed through `translate` and the dimensions titled in `language`."""
    t = translate
    rubric_body = latest_rubric(conn, project_id=project_id)
    rubric = rubric_from_dict(rubric_body)
    if scan is None or (scan.dimensions, scan.scale) != rubric_dimensions(rubric_body):  # reused if of this rubric
        scan = current_scan(conn, project_id=project_id, rubric_body=rubric_body)
    agreement = agreement_report(conn, project_id=project_id, scan=scan, resamples=resamples)
    status = status_counts(conn, project_id=project_id)
    stats = process_stats(conn, project_id=project_id, expert_seconds=scan.total_seconds, status=status)
    reviewers = with_reliability(conn, project_id, reviewer_table(scan))
    series = progress_series(conn, project_id)
    distributions = {name: dict(zip([str(s) for s in scan.scale], map(int, scan.histograms[d])))
                     for d, name in enumerate(scan.dimensions)}
    ci_rows = [(name, b["alpha_ordinal"], b["ci95"]) for name, b in agreement["dimensions"].items()]
    ci_rows.append((t(N_("overall")), agreement["overall"]["alpha_ordinal"], agreement["overall"]["ci95"]))
    ci_rows.append((t(N_("verdict (Fleiss κ)")), agreement["verdict"]["fleiss_kappa"],
                    agreement["verdict"]["fleiss_ci95"]))
    titles = {d.name: d.title_in(language) for d in rubric.dimensions}
    no_data = t(N_("no data yet"))
    hist = stats["rounds"]["histogram"]
    return {
        "status": status,
        "agreement": agreement,
        "stats": stats,
        "reviewers": reviewers,
        "progress": series,
        "score_distributions": distributions,
        "rubric": rubric,
        "charts": {
            "progress": line_chart(t(N_("Progress: accepted items (cumulative) and reviews per day")),
                                   series["accepted_cumulative"], second=series["reviews_per_day"],
                                   legend=(t(N_("accepted")), t(N_("reviews/day"))), empty=no_data),
            "agreement": ci_chart(t(N_("Agreement: Krippendorff's α (ordinal) with 95 % CI")), ci_rows,
                                  empty=t(N_("not enough overlapping reviews yet"))),
            "rounds": bar_chart(t(N_("Rounds per accepted item")), list(hist), list(hist.values()),
                                color=COLORS["second"], empty=no_data),
            "scores": {name: bar_chart(t(N_("Scores: {dimension}")).format(dimension=titles.get(name, name)),
                                       list(dist), list(dist.values()), empty=no_data)
                       for name, dist in distributions.items()},
            "accepted_as": bar_chart(t(N_("How accepted items got there")), list(stats["accepted_as"]),
                                     list(stats["accepted_as"].values()), color=COLORS["muted"], empty=no_data),
        },
        "reviewer_table": reviewer_table_html(reviewers, translate=t),
    }
