"""CLI verbs for quality evidence and the dataset: `agreement`, `stats`, `export`. Added to the root app by
`clinreason.cli`; heavy imports stay inside the command functions."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail, print_json

verbs = typer.Typer()


@verbs.command()
def agreement(
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples for the 95 % intervals")] = 1000,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Bootstrap seed (fixed by default: same output every run)")] = None,
    min_overlap: Annotated[int, typer.Option("--min-overlap", help="Versions two reviewers must share for their pairwise kappa")] = 10,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Inter-rater agreement per rubric dimension and overall: Krippendorff's alpha (ordinal, interval),
    Cohen's weighted kappa per reviewer pair, Fleiss' kappa on verdicts, percent agreement; each with a
    bootstrap 95 % CI and its number of units (unit = rationale version). On step marks (unit = a step two
    reviewers or more marked ok/error): nominal alpha and the share of flagged steps flagged twice."""
    from clinreason.analytics.agreement import DEFAULT_SEED, agreement_report
    from clinreason.analytics.kept import refresh_and
    from clinreason.store import projects as store_projects

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
    # the kept scan state brought up to date, the report made from it, and both the counts and the pairs'
    # intervals stored for the next read
    report = refresh_and(ctx.engine, project_id=proj["id"], use=lambda conn, scan: agreement_report(
        conn, project_id=proj["id"], resamples=resamples, seed=DEFAULT_SEED if seed is None else seed,
        min_overlap=min_overlap, scan=scan))
    if json_out:
        print_json(report)
        return
    typer.echo(_agreement_text(report))


@verbs.command()
def stats(
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Reviewer statistics (reviews, median seconds, acceptance rate, leniency, agreement with adjudicators)
    and process statistics (rounds, how items were accepted, LLM cost, expert minutes, by specialty and source)."""
    from clinreason.analytics.kept import refresh
    from clinreason.analytics.reliability import keep_fit
    from clinreason.analytics.stats import project_stats
    from clinreason.store import projects as store_projects
    from clinreason.store.db import reading

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
    scan = refresh(ctx.engine, project_id=proj["id"])  # the kept scan state, brought up to date and stored
    with reading(ctx.engine) as conn:
        result = project_stats(conn, project_id=proj["id"], scan=scan)
    keep_fit(ctx.engine, proj["id"])  # the reliability fit it made, for the next process to start from
    if json_out:
        print_json(result)
        return
    typer.echo(_stats_text(result))


@verbs.command()
def export(
    out: Annotated[Path, typer.Argument(help="Folder to create (refused if it exists and is not empty, unless --force)")],
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl|parquet|hf|sft|dpo|prm|argilla|labelstudio, or several comma-separated (jsonl,parquet,hf: OUT/<format>/ each, from one read)")] = "jsonl",
    splits: Annotated[Optional[str], typer.Option("--splits", help="Stratified deterministic splits, e.g. 0.8,0.1,0.1 (train,validation,test)")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Keep items whose every dimension's mean score is at least X")] = None,
    consensus: Annotated[Optional[str], typer.Option("--consensus", help="Keep only items decided by consensus|adjudication")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Keep only items from this source")] = None,
    with_history: Annotated[bool, typer.Option("--with-history", help="Include every version with its reviews and their step marks")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a previous export in OUT")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export summary as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Export the accepted items, one row each (question, options, gold answer, final rationale and answer,
    scores per dimension, consensus type, rounds, provenance, source and licence), with a dataset card
    (README.md). Streams at any size; re-running on the same database gives byte-identical files. prm: one
    line per reviewed version of those items, each step labelled ok/error/null from the experts' marks.
    argilla (a Dataset.to_disk folder) and labelstudio (tasks.json + label_config.xml): one record per
    version of those items, its reviews as responses under anonymised ids, the lineage in metadata.
    Several formats at once (`--format jsonl,parquet,hf`) read the database once and write OUT/<format>/
    for each, the same files as that format's own export."""
    from clinreason.stages.export import ExportError, ExportOptions, parse_formats, parse_splits, run_exports

    ctx = _context(db, project, config)
    try:
        formats = parse_formats(format)
        opts = ExportOptions(fmt=formats[0], splits=parse_splits(splits), min_score=min_score, consensus=consensus,
                             source=source, with_history=with_history, force=force)
        summaries = run_exports(ctx.engine, project=ctx.project, out=out, formats=formats, opts=opts,
                                licenses=ctx.settings.project_config.licenses)
    except ExportError as exc:
        _fail(str(exc))
    except ModuleNotFoundError as exc:
        _fail(f"the {format} format needs {exc.name}: pip install 'clinreason[hf]'")
    if len(summaries) > 1:
        _several_exported(out, summaries, json_out)
        return
    summary = summaries[0]
    if json_out:
        typer.echo(json.dumps({**summary.to_dict(), "out": str(out)}, ensure_ascii=False, indent=2))
        return
    typer.echo(f"exported {summary.total} item(s) as {format} to {out}/ in {summary.seconds:.1f} s: "
               + ", ".join(f"{k} {v}" for k, v in summary.rows.items())
               + (f"; {summary.pairs} preference pairs" if format == "dpo" else "")
               + (f"; {sum(summary.records.values())} reviewed versions, step labels "
                  + ", ".join(f"{k} {v}" for k, v in summary.to_dict()["step_labels"].items())
                  if format == "prm" else "")
               + (f"; {sum(summary.records.values())} records (one per rationale version)"
                  if format in ("argilla", "labelstudio") else ""))
    typer.echo(f"files: {', '.join(summary.files)}")


def _several_exported(out: Path, summaries: list, json_out: bool) -> None:
    """The report of an export of several formats: each one's summary, under OUT/<format>/."""
    seconds = max(s.seconds for s in summaries)
    if json_out:
        typer.echo(json.dumps({"out": str(out), "seconds": round(seconds, 3),
                               "formats": [{**s.to_dict(), "out": str(out / s.fmt)} for s in summaries]},
                              ensure_ascii=False, indent=2))
        return
    first = summaries[0]
    typer.echo(f"exported {first.total} item(s) as {', '.join(s.fmt for s in summaries)} to {out}/ in "
               f"{seconds:.1f} s: " + ", ".join(f"{k} {v}" for k, v in first.rows.items()))
    for s in summaries:
        typer.echo(f"{s.fmt}: {out / s.fmt}/ ({', '.join(s.files)})")


def _num(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "[—]"


def _agreement_text(report: dict) -> str:
    lines = [f"agreement over {report['reviews']} reviews by {report['reviewers']} reviewers "
             f"(unit: rationale version; 95 % CI: bootstrap, {report['bootstrap']['resamples']} resamples)",
             f"{'dimension':<16} {'α ordinal':>10} {'95 % CI':>17} {'α interval':>11} {'% agree':>8} {'units':>6}"]
    for name, b in list(report["dimensions"].items()) + [("overall", report["overall"])]:
        agree = "—" if b["percent_agreement"] is None else f"{100 * b['percent_agreement']:.1f}"
        lines.append(f"{name:<16} {_num(b['alpha_ordinal']):>10} {_ci(b['ci95']):>17} "
                     f"{_num(b['alpha_interval']):>11} {agree:>8} {b['units']:>6}")
    v = report["verdict"]
    lines.append(f"verdicts: Fleiss' κ {_num(v['fleiss_kappa'])} {_ci(v['fleiss_ci95'])} on {v['fleiss_units']} "
                 f"versions; pairwise agreement {_num(v['percent_agreement'])} on {v['units']}")
    st = report["steps"]
    lines.append(f"step marks: α nominal (ok/error) {_num(st['alpha_nominal'])} on {st['units']} steps judged by "
                 f"≥ 2 reviewers; flagged steps a second reviewer flagged too: "
                 + ("—" if st["both_flagged_share"] is None else f"{100 * st['both_flagged_share']:.1f} %"))
    lines.append(f"reviewer pairs with ≥ {report['min_pair_overlap']} shared versions: {len(report['pairs'])}")
    for pair in report["pairs"][:20]:
        kappas = ", ".join(f"{d} {_num(b['kappa_quadratic'])}" for d, b in pair["dimensions"].items())
        lines.append(f"  {pair['raters'][0]} × {pair['raters'][1]} ({pair['units']}): {kappas}")
    return "\n".join(lines)


def _stats_text(result: dict) -> str:
    p = result["project"]
    r = p["rounds"]
    lines = [f"{p['items']} items: {p['accepted']} accepted, {p['excluded']} excluded",
             f"rounds per accepted item: mean {_num(r['mean'], 2)}, median {_num(r['median'], 1)}; "
             "histogram " + ", ".join(f"{k}: {v}" for k, v in r["histogram"].items()),
             "accepted as: " + ", ".join(f"{k} {v} ({_num((p['accepted_as_share'][k] or 0) * 100, 1)} %)"
                                         for k, v in p["accepted_as"].items()),
             f"LLM: {p['llm']['tokens']['prompt']} + {p['llm']['tokens']['completion']} tokens, "
             f"${p['llm']['cost_usd']:.4f}; experts: {_num(p['expert_minutes'], 1)} min, "
             f"{_num(p['expert_minutes_per_accepted'], 2)} min per accepted item",
             f"{'reviewer':<12} {'id':<11} {'reviews':>7} {'median s':>9} {'accept':>7} {'leniency':>9} {'adj. agree':>10}"]
    for row in result["reviewers"]:
        lines.append(f"{row['username'][:12]:<12} {row['reviewer']:<11} {row['reviews']:>7} "
                     f"{_num(row['median_seconds'], 1):>9} {_num(row['acceptance_rate'], 2):>7} "
                     f"{_num(row['leniency'], 2):>9} {_num(row['agreement_with_adjudicators'], 2):>10}")
    return "\n".join(lines)
