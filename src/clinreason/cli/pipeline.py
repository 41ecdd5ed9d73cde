"""The LLM half of the CLI: `generate`, `regenerate`, `screen`, `run` (the worker) and `retry-failed`.
Added to the root app by `clinreason.cli`."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from clinreason.app import llm_backend
from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail

verbs = typer.Typer()

EngineOpt = Annotated[str, typer.Option(
    "--engine", help="native: this process's async runner | ray: a Ray Data pipeline ([generate] ray_engine: the "
                     "endpoint via HTTP, or vLLM on the cluster's GPUs; needs the `cluster` extra)")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", envvar="RAY_ADDRESS",
    help="--engine ray: the Ray cluster to join (default: RAY_ADDRESS, else a local Ray on this machine's CPUs)")]


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


def _run_on_ray(kind: str, limit: int | None, concurrency: int | None, ray_address: str | None, ctx, proj,
                progress: _LLMProgress):
    """`--engine ray`: the stage as a Ray Data pipeline (stages/ray_engine.py). Returns (report, model id)."""
    import signal
    import threading

    from clinreason.stages.ray_engine import RayUnavailable, import_ray, plan_from_config, run_ray_stage

    pc = ctx.settings.project_config
    try:
        import_ray()
        plan = plan_from_config(pc, api_key=ctx.settings.llm_api_key, concurrency=concurrency)
    except (RayUnavailable, ValueError) as exc:
        _fail(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    report = run_ray_stage(ctx.engine, project=proj, pc=pc, plan=plan, kind=kind, limit=limit,
                           ray_address=ray_address, stop=stop, on_progress=progress)
    return report, plan.model


def _run_llm_verb(kind: str, limit: int | None, concurrency: int | None, db, project, config, json_out: bool,
                  engine: str = "native", ray_address: str | None = None) -> None:
    import asyncio

    from clinreason.llm.base import LLMError
    from clinreason.stages.runner import run_llm_stage
    from clinreason.store import projects as store_projects
    from clinreason.store import work

    if engine not in ("native", "ray"):
        _fail(f"--engine must be native or ray, not {engine!r}")
    ctx = _context(db, project, config)
    pc = ctx.settings.project_config
    conc = concurrency or pc.llm.concurrency
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
        waiting = work.count_waiting(conn, project_id=proj["id"],
                                     states=["imported", "generating"] if kind == "draft" else ["regenerating"])
    total = min(waiting, limit) if limit is not None else waiting
    if engine == "ray":
        progress = _LLMProgress(total, "drafting on Ray" if kind == "draft" else "regenerating on Ray")
        try:
            report, model_id = _run_on_ray(kind, limit, concurrency, ray_address, ctx, proj, progress)
        finally:
            progress.close()
        _print_llm_report(kind, report, model_id, json_out)
        return
    try:
        backend = llm_backend(ctx.settings, conc)
    except LLMError as exc:
        _fail(str(exc))
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
    _print_llm_report(kind, report, backend.model_id, json_out)


def _print_llm_report(kind: str, report, model_id: str, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps({**report.to_dict(), "model": model_id}, indent=2))
        return
    verb = "drafted" if kind == "draft" else "regenerated"
    typer.echo(f"{verb} {report.stored} rationale(s) with {model_id} in {report.wall_seconds:.1f} s "
               f"({report.requests} requests, {report.cached} served from cache)"
               + (f"; {report.failed} item(s) failed (see `clinreason status`)" if report.failed else ""))
    if report.held:
        typer.echo(f"the privacy gate held {report.held} item(s): nothing about them was sent "
                   "(see `clinreason privacy list`)")
    if report.flagged:
        typer.echo(f"{report.flagged} request(s) were sent with privacy findings recorded ([privacy] gate = \"flag\")")
    if report.claimed == 0:
        typer.echo("nothing was waiting" + (" to be drafted" if kind == "draft" else " for regeneration"))
    else:
        typer.echo("next: clinreason screen")


@verbs.command()
def generate(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Draft at most N items")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once (default: [llm] concurrency)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run report as JSON")] = False,
    engine: EngineOpt = "native", ray_address: RayAddressOpt = None,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Draft a rationale for every imported item (or --limit N). Resumable: stop it at any moment
    and run it again; nothing is lost and no version is drafted twice."""
    _run_llm_verb("draft", limit, concurrency, db, project, config, json_out, engine, ray_address)


@verbs.command()
def regenerate(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Regenerate at most N items")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight at once")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run report as JSON")] = False,
    engine: EngineOpt = "native", ray_address: RayAddressOpt = None,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Guided regeneration of every item waiting for it: the prompt carries the previous version, the
    failing rubric dimensions with scores, the reviewers' comments and the failed checks."""
    _run_llm_verb("regenerate", limit, concurrency, db, project, config, json_out, engine, ray_address)


@verbs.command()
def screen(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Screen at most N items")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Run the automatic checks (and the LLM judge, if enabled) on new drafts and route them: to the
    review queue, or back for automatic regeneration with the failure as feedback."""
    import asyncio

    from clinreason.stages.screen import run_screening
    from clinreason.store import projects as store_projects

    ctx = _context(db, project, config)
    pc = ctx.settings.project_config
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
    judge = llm_backend(ctx.settings, judge=True) if pc.screen.judge else None

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
    if report.held:
        typer.echo(f"the privacy gate held {report.held} item(s) before the LLM judge: nothing about them was sent "
                   "(see `clinreason privacy list`)")
    if report.judged or report.judge_errors:
        typer.echo(f"LLM judge: {report.judged} pre-scored, {report.judge_errors} without a usable answer")
    if report.to_regeneration:
        typer.echo("next: clinreason regenerate (or leave `clinreason run` running)")


@verbs.command()
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
    from clinreason.store import projects as store_projects

    ctx = _context(db, project, config)
    pc = ctx.settings.project_config
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
    try:
        backend = llm_backend(ctx.settings, concurrency)
    except LLMError as exc:
        _fail(str(exc))
    judge = llm_backend(ctx.settings, judge=True) if pc.screen.judge else None

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
    if r.outages:
        typer.echo(f"{r.outages} round(s) were cut short by the database not answering; the worker paused and "
                   "carried on when it was back", err=True)
    for line in r.log:
        typer.echo(line, err=True)


@verbs.command("retry-failed")
def retry_failed(
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Send every `failed` item back to drafting (or to regeneration, when it already has a version)."""
    from datetime import timedelta

    from clinreason.store import db as store_db
    from clinreason.store import items, projects, rationales
    from clinreason.store.common import now

    ctx = _context(db, project, config)
    moved = 0
    with store_db.transaction(ctx.engine) as conn:
        proj = projects.require_project(conn, name=ctx.project)
        failed = items.project_items(conn, project_id=proj["id"], states=["failed"])
        drafted = rationales.latest_numbers(conn, item_ids=[i.id for i in failed])
        for item in failed:
            target = "regenerating" if item.id in drafted else "generating"
            # an expired claim marks it as free to take for the next worker
            items.transition_item(conn, item_id=item.id, expected="failed", target=target, actor="cli",
                                  fail_reason=None, claimed_by="retry", claimed_until=now() - timedelta(seconds=1))
            moved += 1
    typer.echo(f"{moved} failed item(s) queued again; run `clinreason run` (or generate / regenerate)")
