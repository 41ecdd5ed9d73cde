"""The `clinreason` command line. Each verb resolves settings once, opens the store, calls a stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from clinreason.config import DEFAULT_CONFIG_TOML, ConfigError, resolve_settings

app = typer.Typer(
    name="clinreason",
    help="Build expert-verified clinical reasoning datasets: import questions, draft rationales with an LLM, "
    "screen them, have experts review them, export the result.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DbOpt = Annotated[Optional[str], typer.Option("--db", help="SQLAlchemy URL or SQLite file (env CLINREASON_DB; default ./clinreason.db)")]
ProjectOpt = Annotated[Optional[str], typer.Option("--project", help="Project name (env CLINREASON_PROJECT; default 'default')")]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", help="Project config file (env CLINREASON_CONFIG; default ./clinreason.toml)")]


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(db: str | None, project: str | None, config: str | None):
    try:
        return resolve_settings(db=db, project=project, config=config)
    except ConfigError as exc:
        _fail(str(exc))


def _context(db: str | None, project: str | None, config: str | None):
    from clinreason.app import NotInitialised, open_context
    from clinreason.store.repository import NotFoundError

    settings = _settings(db, project, config)
    try:
        ctx = open_context(settings)
        ctx.project_row()
    except (NotInitialised, NotFoundError) as exc:
        _fail(str(exc))
    return ctx


@app.command()
def init(db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Create or upgrade the database and write a project config (clinreason.toml) if there is none."""
    from clinreason.app import initialise
    from clinreason.domain.rubric import RubricError, rubric_from_dict

    settings = _settings(db, project, config)
    wrote_config = False
    if not settings.config_path.exists():
        settings.config_path.write_text(DEFAULT_CONFIG_TOML, encoding="utf-8")
        wrote_config = True
    try:
        rubric_from_dict(settings.project_config.rubric)
    except RubricError as exc:
        _fail(f"{settings.config_path}: {exc}")
    ctx, created, rubric_version = initialise(settings)
    ctx.engine.dispose()
    if wrote_config:
        typer.echo(f"wrote {settings.config_path} (edit it to set models, rubric and review policy)")
    typer.echo(f"database {settings.db_url} is at the current schema")
    typer.echo(f"project '{settings.project}' {'created' if created else 'already exists'}; rubric version {rubric_version}")


class _Progress:
    """A rich progress bar on a terminal, nothing otherwise."""

    def __init__(self, planned):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TextColumn("{task.fields[records]} records"), TimeRemainingColumn(),
                                  transient=True, console=None)
        self._progress.start()
        self._task = None
        self._records = 0

    def start_file(self, path: Path) -> None:
        total = path.stat().st_size if path.is_file() else None
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(path.name, total=total, records=self._records)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def records(self, n: int) -> None:
        self._records += n
        self._progress.update(self._task, records=self._records)

    def close(self) -> None:
        self._progress.stop()


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A question-bank file, or a folder of them")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto|medqa|medmcqa|pubmedqa|mmlu|cmexam|jsonl|csv|parquet|hf")] = "auto",
    map: Annotated[Optional[list[str]], typer.Option("--map", help="field=column for generic layouts (repeatable); options may list columns: options=a,b,c,d")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Source name recorded with every item (default: the format, or the file name)")] = None,
    license: Annotated[Optional[str], typer.Option("--license", help="Licence of the source, for provenance and the dataset card")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the valid records; write refused ones to a rejects file")] = False,
    rejects: Annotated[Optional[Path], typer.Option("--rejects", help="Where --skip-invalid writes refused records")] = None,
    split: Annotated[str, typer.Option("--split", help="For MMLU folders: test|dev|val|all")] = "test",
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Import questions. The whole import is one transaction: a bad record refuses the file, naming the
    record and field, and nothing is written (unless --skip-invalid). Re-importing adds nothing."""
    from clinreason.stages.ingest import ImportAborted, import_path
    from clinreason.stages.ingest_formats import parse_mapping

    try:
        mapping = parse_mapping(map or [])
    except ValueError as exc:
        _fail(str(exc), 2)
    ctx = _context(db, project, config)
    progress = _Progress if sys.stderr.isatty() and not json_out else None
    try:
        summary = import_path(ctx.engine, project=ctx.project, path=path, fmt=format, mapping=mapping, source=source,
                              license=license, skip_invalid=skip_invalid, rejects_path=rejects, split=split,
                              progress_factory=progress)
    except ImportAborted as exc:
        _fail(f"{exc}\nnothing was imported (the database is unchanged)")
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
        return
    s = summary
    typer.echo(f"read {s.records} records from {len(s.files)} file(s): {', '.join(s.files)}")
    if s.skipped_files:
        shown = "; ".join(s.skipped_files[:4]) + (f"; +{len(s.skipped_files) - 4} more" if len(s.skipped_files) > 4 else "")
        typer.echo(f"skipped {len(s.skipped_files)} file(s): {shown}")
    if s.added == 0 and s.rejected == 0:
        typer.echo(f"added 0 items: all {s.duplicates} were already in project '{ctx.project}'")
    else:
        typer.echo(f"added {s.added} items; {s.duplicates} duplicates (already present or repeated in the input)"
                   + (f", {s.sources_added} of which recorded an extra source" if s.sources_added else ""))
    if s.by_source:
        typer.echo("added by source: " + ", ".join(f"{k} {v}" for k, v in sorted(s.by_source.items())))
    if s.by_specialty:
        top = sorted(s.by_specialty.items(), key=lambda kv: (-kv[1], kv[0]))
        more = f" (+{len(top) - 8} more)" if len(top) > 8 else ""
        typer.echo("added by specialty: " + ", ".join(f"{k} {v}" for k, v in top[:8]) + more)
    if s.flagged:
        typer.echo(f"{s.flagged} item(s) have no gold answer: imported as flagged questions, sent to adjudication")
    if s.rejected:
        typer.echo(f"refused {s.rejected} invalid record(s); reasons written to {s.rejects_path}")


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Counts per lifecycle state and per source, rationale versions, reviews, progress and cost."""
    from clinreason.store import repository as repo

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        proj = repo.require_project(conn, name=ctx.project)
        counts = repo.status_counts(conn, project_id=proj["id"])
    if json_out:
        typer.echo(json.dumps(counts, ensure_ascii=False, indent=2))
        return
    typer.echo(f"project '{ctx.project}': {counts['items']} items, {counts['rationales']} rationale versions, "
               f"{counts['reviews']} reviews, {counts['progress']:.1%} decided")
    typer.echo("by state:   " + ", ".join(f"{k} {v}" for k, v in counts["by_state"].items() if v) if counts["items"] else "by state:   (no items)")
    if counts["by_source"]:
        typer.echo("by source:  " + ", ".join(f"{k} {v}" for k, v in counts["by_source"].items()))
    if counts["by_model"]:
        typer.echo("by model:   " + ", ".join(f"{k} {v}" for k, v in counts["by_model"].items()))
    if counts["flagged"]:
        typer.echo(f"flagged:    {counts['flagged']} (shown to experts with a warning, or sent to adjudication)")
    if counts["failures"]:
        typer.echo("failed:     " + "; ".join(f"{n} × {reason}" for reason, n in counts["failures"].items()))
    tok = counts["tokens"]
    typer.echo(f"LLM usage:  {tok['prompt']} prompt + {tok['completion']} completion tokens, ${counts['cost_usd']:.4f}")


def _make_backend(ctx, concurrency: int | None = None, *, judge: bool = False):
    from clinreason.llm.factory import make_backend

    pc = ctx.settings.project_config
    llm = pc.llm
    prices = {m: (float(p[0]), float(p[1])) for m, p in llm.prices.items() if len(p) == 2}
    if judge:
        return make_backend(backend=pc.screen.judge_backend, base_url=pc.screen.judge_base_url or llm.base_url,
                            model=pc.screen.judge_model or llm.model, api_key=ctx.settings.llm_api_key,
                            timeout=llm.timeout, concurrency=concurrency or llm.concurrency, prices=prices,
                            max_attempts=llm.max_attempts)
    return make_backend(backend=llm.backend, base_url=llm.base_url, model=llm.model, api_key=ctx.settings.llm_api_key,
                        timeout=llm.timeout, concurrency=concurrency or llm.concurrency, prices=prices,
                        max_attempts=llm.max_attempts)


def _stop_event_on_signals(loop, stop) -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass


class _LLMProgress:
    def __init__(self, total: int, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = sys.stderr.isatty()
        if self.enabled:
            self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                                     TimeElapsedColumn(), transient=True)
            self.progress.start()
            self.task = self.progress.add_task(label, total=total, note="")

    def __call__(self, report) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=report.stored + report.failed,
                                 note=f"{report.failed} failed" if report.failed else "")

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()


def _run_llm_verb(kind: str, limit: int | None, concurrency: int | None, db, project, config, json_out: bool) -> None:
    import asyncio

    from clinreason.llm.base import LLMError
    from clinreason.stages.runner import run_llm_stage
    from clinreason.store import repository as repo
    from clinreason.store import work

    ctx = _context(db, project, config)
    pc = ctx.settings.project_config
    conc = concurrency or pc.llm.concurrency
    with ctx.engine.connect() as conn:
        proj = repo.require_project(conn, name=ctx.project)
        waiting = work.count_waiting(conn, project_id=proj["id"],
                                     states=["imported", "generating"] if kind == "draft" else ["regenerating"])
    try:
        backend = _make_backend(ctx, conc)
    except LLMError as exc:
        _fail(str(exc))
    total = min(waiting, limit) if limit is not None else waiting
    progress = _LLMProgress(total, "drafting" if kind == "draft" else "regenerating")

    async def go():
        stop = asyncio.Event()
        _stop_event_on_signals(asyncio.get_running_loop(), stop)
        try:
            return await run_llm_stage(ctx.engine, project=proj, pc=pc, backend=backend, kind=kind, limit=limit,
                                       concurrency=conc, stop=stop, on_progress=progress)
        finally:
            await backend.aclose()

    try:
        report = asyncio.run(go())
    finally:
        progress.close()
    if json_out:
        typer.echo(json.dumps({**report.to_dict(), "model": backend.model_id}, indent=2))
        return
    verb = "drafted" if kind == "draft" else "regenerated"
    typer.echo(f"{verb} {report.stored} rationale(s) with {backend.model_id} in {report.wall_seconds:.1f} s "
               f"({report.requests} requests, {report.cached} served from cache)"
               + (f"; {report.failed} item(s) failed (see `clinreason status`)" if report.failed else ""))
    if report.claimed == 0:
        typer.echo("nothing was waiting" + (" to be drafted" if kind == "draft" else " for regeneration"))
    else:
        typer.echo("next: clinreason screen")


@app.command()
def generate(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Draft at most N items")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once (default: [llm] concurrency)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run report as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Draft a rationale for every imported item (or --limit N). Resumable: stop it at any moment
    and run it again; nothing is lost and no version is drafted twice."""
    _run_llm_verb("draft", limit, concurrency, db, project, config, json_out)


@app.command()
def regenerate(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Regenerate at most N items")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run report as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Guided regeneration of every item waiting for it: the prompt carries the previous version, the
    failing rubric dimensions with scores, the reviewers' comments and the failed checks."""
    _run_llm_verb("regenerate", limit, concurrency, db, project, config, json_out)


@app.command()
def screen(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Screen at most N items")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Run the automatic checks (and the LLM judge, if enabled) on new drafts and route them: to the
    review queue, or back for automatic regeneration with the failure as feedback."""
    import asyncio

    from clinreason.stages.screen import run_screening
    from clinreason.store import repository as repo

    ctx = _context(db, project, config)
    pc = ctx.settings.project_config
    with ctx.engine.connect() as conn:
        proj = repo.require_project(conn, name=ctx.project)
    judge = _make_backend(ctx, judge=True) if pc.screen.judge else None

    async def go():
        try:
            return await run_screening(ctx.engine, project=proj, pc=pc, judge=judge, limit=limit)
        finally:
            if judge is not None:
                await judge.aclose()

    report = asyncio.run(go())
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(f"screened {report.screened} draft(s): {report.to_review} to the review queue "
               f"({report.flagged} flagged for experts), {report.to_regeneration} sent back for automatic regeneration")
    if report.failed_checks:
        typer.echo("failed checks: " + ", ".join(f"{k} {v}" for k, v in sorted(report.failed_checks.items())))
    if report.judged or report.judge_errors:
        typer.echo(f"LLM judge: {report.judged} pre-scored, {report.judge_errors} without a usable answer")
    if report.to_regeneration:
        typer.echo("next: clinreason regenerate (or leave `clinreason run` running)")


@app.command()
def run(
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once")] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop when there is nothing left to do instead of waiting for more")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds to wait between rounds when idle")] = 2.0,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Worker: keeps drafting, regeneration and screening moving until stopped (SIGTERM or Ctrl-C stop it
    gracefully: in-flight requests finish and are stored). Run several against one PostgreSQL database."""
    import asyncio

    from clinreason.llm.base import LLMError
    from clinreason.stages.worker import run_worker
    from clinreason.store import repository as repo

    ctx = _context(db, project, config)
    pc = ctx.settings.project_config
    with ctx.engine.connect() as conn:
        proj = repo.require_project(conn, name=ctx.project)
    try:
        backend = _make_backend(ctx, concurrency)
    except LLMError as exc:
        _fail(str(exc))
    judge = _make_backend(ctx, judge=True) if pc.screen.judge else None

    def on_round(r) -> None:
        if r.drafted or r.regenerated or r.screened:
            typer.echo(f"round {r.rounds}: drafted {r.drafted}, regenerated {r.regenerated}, screened {r.screened}, "
                       f"to review {r.to_review}, failed {r.failed}", err=True)

    async def go():
        stop = asyncio.Event()
        _stop_event_on_signals(asyncio.get_running_loop(), stop)
        try:
            return await run_worker(ctx.engine, project=proj, pc=pc, backend=backend, judge=judge,
                                    concurrency=concurrency or pc.llm.concurrency, once=once, poll_seconds=poll,
                                    stop=stop, on_round=on_round)
        finally:
            await backend.aclose()
            if judge is not None:
                await judge.aclose()

    typer.echo(f"worker started on project '{ctx.project}' with {backend.model_id}", err=True)
    r = asyncio.run(go())
    typer.echo(f"worker stopped: drafted {r.drafted}, regenerated {r.regenerated}, screened {r.screened}, "
               f"sent to review {r.to_review}, failed {r.failed}")


@app.command("retry-failed")
def retry_failed(
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Send every `failed` item back to drafting (or to regeneration, when it already has a version)."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from clinreason.store import repository as repo
    from clinreason.store.tables import items, rationales

    ctx = _context(db, project, config)
    moved = 0
    with ctx.engine.begin() as conn:
        proj = repo.require_project(conn, name=ctx.project)
        rows = conn.execute(select(items.c.id, func.count(rationales.c.id))
                            .outerjoin(rationales, rationales.c.item_id == items.c.id)
                            .where(items.c.project_id == proj["id"], items.c.state == "failed")
                            .group_by(items.c.id)).all()
        for item_id, versions in rows:
            target = "regenerating" if versions else "generating"
            # an expired claim marks it as free to take for the next worker
            repo.transition_item(conn, item_id=item_id, expected="failed", target=target, actor="cli",
                                 fail_reason=None, claimed_by="retry", claimed_until=repo.now() - timedelta(seconds=1))
            moved += 1
    typer.echo(f"{moved} failed item(s) queued again; run `clinreason run` (or generate / regenerate)")


@app.command()
def history(
    item_id: Annotated[str, typer.Argument(help="The item's id (as `status`, exports and the web app show it)")],
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """The item's whole story: every version with its diff to the previous one, every check, review,
    decision and event."""
    import difflib

    from clinreason.store import repository as repo
    from clinreason.store.history import item_history

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        proj = repo.require_project(conn, name=ctx.project)
        story = item_history(conn, project_id=proj["id"], item_id=item_id)
    if story is None:
        _fail(f"no item {item_id} in project '{ctx.project}'")
    if json_out:
        typer.echo(json.dumps(story, ensure_ascii=False, indent=2, default=str))
        return
    item = story["item"]
    typer.echo(f"item {item['id']} — {item['state']}" + (f" (strikes {item['strikes']})" if item["strikes"] else ""))
    typer.echo("sources: " + ", ".join(f"{s['source']} {s['file']} record {s['record']}" for s in story["sources"]))
    typer.echo(item["question"])
    for label, text in item["options"]:
        mark = "*" if label in item["answer_labels"] else " "
        typer.echo(f" {mark} {label}. {text}")
    if item["flag_reason"]:
        typer.echo(f"flag: {item['flag_reason']}")
    previous = None
    for v in story["versions"]:
        typer.echo(f"\n— version {v['version']} ({v['origin']}, {v['author']}, {v['created_at']:%Y-%m-%d %H:%M}) "
                   f"final answer {', '.join(v['final_answer']) or '?'}, parse {v['parse_status']}")
        if previous is None:
            typer.echo(v["text"])
        else:
            diff = difflib.unified_diff(previous["text"].splitlines(), v["text"].splitlines(),
                                        f"version {previous['version']}", f"version {v['version']}", lineterm="")
            typer.echo("\n".join(diff) or "(text unchanged)")
        for c in (c for c in story["checks"] if c["rationale_id"] == v["id"]):
            typer.echo(f"  check {'ok  ' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}")
        for r in (r for r in story["reviews"] if r["rationale_id"] == v["id"]):
            scores = ", ".join(f"{k} {s}" for k, s in r["scores"].items())
            typer.echo(f"  review by {r['username']}: {r['verdict']} ({scores})")
            for dim, text in (r["comments"] or {}).items():
                if text:
                    typer.echo(f"    {dim}: {text}")
        previous = v
    if story["decision"]:
        d = story["decision"]
        typer.echo(f"\ndecision: {d['kind']} by {d['decided_by']}: {d['reason']}")
    typer.echo("\nevents:")
    for e in story["events"]:
        change = f"{(e['before'] or {}).get('state', '')} -> {(e['after'] or {}).get('state', '')}" \
            if e["kind"] == "item.transition" else ""
        typer.echo(f"  {e['at']:%Y-%m-%d %H:%M:%S} {e['kind']} {change} by {e['actor']}")


@app.command("backup")
def backup_cmd(
    out: Annotated[Path, typer.Argument(help="The backup file to write (never overwritten)")],
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """A consistent copy of the whole database, events included (SQLite online backup; pg_dump)."""
    from clinreason.store.backup import BackupError, backup

    ctx = _context(db, project, config)
    try:
        backup(ctx.engine, out)
    except BackupError as exc:
        _fail(str(exc))
    typer.echo(f"backup written to {out} ({out.stat().st_size:,} bytes)")


@app.command("restore")
def restore_cmd(
    source: Annotated[Path, typer.Argument(help="A file written by `clinreason backup`")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the database's current contents are replaced")] = False,
    db: DbOpt = None, config: ConfigOpt = None,
) -> None:
    """Replace the database's contents with a backup's (all projects)."""
    from clinreason.store import db as dbm
    from clinreason.store.backup import BackupError, restore

    settings = _settings(db, None, config)
    if not yes:
        _fail("restore replaces everything in the database: run again with --yes to confirm", 2)
    engine = dbm.make_engine(settings.db_url)
    try:
        restore(engine, source)
    except BackupError as exc:
        _fail(str(exc))
    engine.dispose()
    typer.echo(f"database {settings.db_url} restored from {source}")


@app.command()
def simulate(
    policy: Annotated[str, typer.Option("--policy", help="fixed-1|fixed-2|fixed-3|adaptive")] = "adaptive",
    items_n: Annotated[int, typer.Option("--items", help="Synthetic items")] = 1000,
    reviewers: Annotated[int, typer.Option("--reviewers", help="Synthetic reviewers (a careless and a harsh one among them)")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same run)")] = 0,
    signal: Annotated[float, typer.Option("--signal", help="How strongly screening signals track the hidden truth, 0-1")] = 0.8,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
) -> None:
    """Review-allocation simulator: synthetic items with a hidden true quality, synthetic reviewers, and
    the real assignment, consensus, regeneration-round and adjudication code on a scratch database."""
    from clinreason.stages.simulate import POLICIES, run_simulation

    if policy not in POLICIES:
        _fail(f"--policy must be one of {', '.join(POLICIES)}", 2)
    result = run_simulation(policy=policy, n_items=items_n, n_reviewers=reviewers, seed=seed, signal_strength=signal)
    out = result.to_dict()
    if json_out:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"{policy}: {out['accepted']} accepted, {out['excluded']} excluded of {out['items']} items; "
               f"{out['reviews_per_accepted']} expert reviews per accepted item "
               f"({out['expert_minutes_per_accepted']} expert minutes); residual defect rate "
               f"{out['residual_defect_rate']:.2%}; wrongly excluded {out['wrongly_excluded']}; "
               f"{out['rounds_per_item']} versions per item")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Where the demo database and config go")] = Path("demo-run"),
    limit: Annotated[Optional[int], typer.Option("--limit", help="Draft at most N of the sample questions")] = None,
    serve: Annotated[Optional[bool], typer.Option("--serve/--no-serve", help="Then start the review app with seeded users (one-time passwords printed); default: when run from a terminal")] = None,
    port: Annotated[int, typer.Option("--port", help="Port of the review app")] = 8000,
) -> None:
    """End to end on the bundled sample questions: import, draft with the embedded model (or the
    configured endpoint), screen, one round of guided regeneration, status; then the review app with a
    seeded admin, two reviewers and an adjudicator, and the worker, until Ctrl+C."""
    from clinreason.demo import run_demo

    if serve is None:
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    run_demo(workdir, limit=limit, serve=serve, port=port)


def _register_plugins() -> None:
    """Verbs defined next to the code they drive (the web app's `serve` and `users`); each module
    exposes `register(app)` and keeps its heavy imports inside the command functions."""
    import importlib

    for module in ("clinreason.web.commands", "clinreason.analytics.commands"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_plugins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
