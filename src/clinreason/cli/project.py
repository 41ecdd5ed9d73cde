"""The project's own verbs: `init`, `import`, `status`, `history`, `backup` and `restore`. Each resolves
settings once, opens the store, calls a stage. Added to the root app by `clinreason.cli`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail, _settings, print_json
from clinreason.config import DEFAULT_CONFIG_TOML

verbs = typer.Typer()


@verbs.command()
def init(db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Create or upgrade the database and write a project config (clinreason.toml) if there is none."""
    from clinreason.app import initialise
    from clinreason.domain.rubric import RubricError, rubric_from_dict

    settings = _settings(db, project, config)
    wrote_config = False
    if not settings.config_path.exists():
        settings.config_path.write_text(DEFAULT_CONFIG_TOML, encoding="utf-8")
        wrote_config = True
        settings = _settings(db, project, config)  # what the new file says is what the project stores
    try:
        rubric_from_dict(settings.project_config.rubric)
    except RubricError as exc:
        _fail(f"{settings.config_path}: {exc}")
    ctx, report = initialise(settings)
    ctx.engine.dispose()
    if wrote_config:
        typer.echo(f"wrote {settings.config_path} (edit it to set models, rubric and review policy)")
    typer.echo(f"database {settings.db_url} is at the current schema")
    typer.echo(f"project '{settings.project}' {'created' if report.created else 'already exists'}; "
               f"rubric version {report.rubric_version}")
    for line in report.config_changes:
        typer.echo(f"  changed {line}")
    if report.rubric_note != "unchanged":
        typer.echo(f"  rubric from {settings.config_path}: {report.rubric_note}")


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


@verbs.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A question-bank file, or a folder of them (an Argilla dataset is a folder)")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto|medqa|medmcqa|pubmedqa|mmlu|cmexam|jsonl|json|csv|tsv|parquet|hf|argilla|labelstudio")] = "auto",
    map: Annotated[Optional[list[str]], typer.Option("--map", help="field=column for mapped layouts (repeatable); options may list columns: options=a,b,c,d; "
                                                     "options as objects: option_text=KEY [option_label=KEY]; ^NAME reads NAME of an enclosing object (json --records), ^* the key the last * matched")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Source name recorded with every item (default: the format, or the file name)")] = None,
    license: Annotated[Optional[str], typer.Option("--license", help="Licence of the source, for provenance and the dataset card")] = None,
    delimiter: Annotated[Optional[str], typer.Option("--delimiter", help="csv/tsv: the column separator (one character, or 'tab'); default: csv sniffs , ; tab |")] = None,
    records: Annotated[Optional[str], typer.Option("--records", help="json: where the records are in the document, dot-separated keys, * for every key or index: 'sections.*.questions'")] = None,
    answer_base: Annotated[Optional[int], typer.Option("--answer-base", help="Integer answers count options from 0 or from 1 (mapped layouts; never guessed: without it such a file is refused)")] = None,
    map_question: Annotated[Optional[list[str]], typer.Option("--map-question", help="argilla/labelstudio: NAME=DIMENSION maps a question to a rubric dimension (rating: score, text: comment), or NAME=verdict|general|ignore (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check everything, write nothing; show the first items as they would be stored")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the valid records; write refused ones to a rejects file")] = False,
    rejects: Annotated[Optional[Path], typer.Option("--rejects", help="Where --skip-invalid writes refused records")] = None,
    split: Annotated[str, typer.Option("--split", help="For MMLU folders: test|dev|val|all")] = "test",
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Import questions. The whole import is one transaction: a bad record refuses the file, naming the
    record and field, and nothing is written (unless --skip-invalid). Re-importing adds nothing. An Argilla
    or Label Studio export brings its drafted rationales and expert reviews too."""
    from clinreason.stages.ingest import ImportAborted, import_path
    from clinreason.stages.ingest_annotated import parse_question_map
    from clinreason.stages.ingest_formats import parse_mapping
    from clinreason.stages.ingest_readers import parse_delimiter

    try:
        mapping = parse_mapping(map or [])
        question_map = parse_question_map(map_question or [])
        sep = parse_delimiter(delimiter) if delimiter is not None else None
    except ValueError as exc:
        _fail(str(exc), 2)
    if answer_base is not None and answer_base not in (0, 1):
        _fail(f"--answer-base: 0 or 1, got {answer_base}", 2)
    ctx = _context(db, project, config)
    progress = _Progress if sys.stderr.isatty() and not json_out else None
    try:
        summary = import_path(ctx.engine, project=ctx.project, path=path, fmt=format, mapping=mapping, source=source,
                              license=license, skip_invalid=skip_invalid, rejects_path=rejects, split=split,
                              progress_factory=progress, delimiter=sep, records=records, answer_base=answer_base,
                              question_map=question_map, dry_run=dry_run)
    except ImportAborted as exc:
        _fail(f"{exc}\nnothing was imported (the database is unchanged)")
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
        return
    s = summary
    if dry_run:
        typer.echo("dry run: everything was read and checked; nothing was written")
        for n, item in enumerate(s.preview, 1):
            _echo_preview(n, item)
    typer.echo(f"read {s.records} records from {len(s.files)} file(s): {', '.join(s.files)}")
    if s.skipped_files:
        shown = "; ".join(s.skipped_files[:4]) + (f"; +{len(s.skipped_files) - 4} more" if len(s.skipped_files) > 4 else "")
        typer.echo(f"skipped {len(s.skipped_files)} file(s): {shown}")
    verb = "would add" if dry_run else "added"
    if s.added == 0 and s.rejected == 0:
        typer.echo(f"{verb} 0 items: all {s.duplicates} were already in project '{ctx.project}'")
    else:
        typer.echo(f"{verb} {s.added} items; {s.duplicates} duplicates (already present or repeated in the input)"
                   + (f", {s.sources_added} of which recorded an extra source" if s.sources_added else ""))
    if s.by_source:
        typer.echo(f"{verb} by source: " + ", ".join(f"{k} {v}" for k, v in sorted(s.by_source.items())))
    if s.by_specialty:
        top = sorted(s.by_specialty.items(), key=lambda kv: (-kv[1], kv[0]))
        more = f" (+{len(top) - 8} more)" if len(top) > 8 else ""
        typer.echo(f"{verb} by specialty: " + ", ".join(f"{k} {v}" for k, v in top[:8]) + more)
    distribution = s.gold_distribution()
    if distribution:
        typer.echo("gold answer positions: " + ", ".join(f"{p} {share:.0%}".replace("%", " %")
                                                         for p, _, share in distribution))
    if s.annotations is not None:
        a = s.annotations
        typer.echo(f"{verb} {a.versions} drafted version(s), {a.reviews} review(s), {a.reviewers_created} new "
                   "reviewer account(s) (inactive: an admin enables them)"
                   + (f"; {a.verdicts_derived} verdict(s) derived from the scores (no verdict question)"
                      if a.verdicts_derived else "")
                   + (f"; {a.skipped_records} record(s) of items already in the project kept what those have"
                      if a.skipped_records else ""))
        if a.ignored_questions:
            typer.echo("ignored questions: " + ", ".join(sorted(a.ignored_questions)))
    if s.flagged:
        typer.echo(f"{s.flagged} item(s) have no gold answer: imported as flagged questions, sent to adjudication")
    if s.rejected:
        where = f"reasons written to {s.rejects_path}" if s.rejects_path else "first: " + " | ".join(s.reject_samples)
        typer.echo(f"refused {s.rejected} invalid record(s); {where}")
    for warning in s.warnings:
        typer.echo(f"warning: {warning}", err=True)


def _echo_preview(n: int, item: dict[str, Any]) -> None:
    """One item as it would be stored: stem, labelled options with the gold answer marked."""
    typer.echo(f"— item {n}: {item['file']} record {item['record']} ({item['locator']}), id {item['id']}, "
               f"state {item['state']}, language {item['language']}"
               + (f", specialty {item['specialty']}" if item["specialty"] else ""))
    if item["context"]:
        typer.echo(f"  context: {item['context']}")
    typer.echo(f"  {item['question']}")
    for label, text in item["options"]:
        typer.echo(f"  {'*' if label in item['answer'] else ' '} {label}. {text}")
    if item["answer_text"]:
        typer.echo(f"  answer: {item['answer_text']}")
    if not item["answer"] and not item["answer_text"]:
        typer.echo("  (no gold answer: a flagged question)")
    if "versions" in item:
        typer.echo(f"  with {item['versions']} drafted version(s) and {item['reviews']} review(s)")


@verbs.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Counts per lifecycle state and per source, rationale versions, reviews, progress and cost."""
    from clinreason.store import projects as store_projects
    from clinreason.store import readmodels as store_readmodels

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
        counts = store_readmodels.status_counts(conn, project_id=proj["id"])
    if json_out:
        print_json(counts)
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
    if counts["held"] or any(counts["privacy"]["by_status"].values()):
        p = counts["privacy"]
        typer.echo(f"privacy:    {counts['held']} held"
                   + (f" ({', '.join(f'{n} × {t}' for t, n in p['held_findings'].items())})" if p["held_findings"] else "")
                   + f", {p['by_status']['flagged']} sent flagged, {p['by_status']['released']} released, "
                   f"{p['by_status']['edited']} edited, {p['by_status']['excluded']} excluded"
                   + (" — see `clinreason privacy list`" if counts["held"] else ""))
    if counts["failures"]:
        typer.echo("failed:     " + "; ".join(f"{n} × {reason}" for reason, n in counts["failures"].items()))
    tok = counts["tokens"]
    typer.echo(f"LLM usage:  {tok['prompt']} prompt + {tok['completion']} completion tokens, ${counts['cost_usd']:.4f}")


@verbs.command()
def history(
    item_id: Annotated[str, typer.Argument(help="The item's id (as `status`, exports and the web app show it)")],
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """The item's whole story: every version with its diff to the previous one, every check, review,
    decision and event."""
    import difflib

    from clinreason.store import projects as store_projects
    from clinreason.store.readmodels import item_history

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        proj = store_projects.require_project(conn, name=ctx.project)
        story = item_history(conn, project_id=proj["id"], item_id=item_id)
    if story is None:
        _fail(f"no item {item_id} in project '{ctx.project}'")
    from clinreason.stages.history import step_history

    steps_by_version = {h["version"]: h for h in step_history(story["versions"], story["reviews"])}
    story = _plain_story(story)
    story["step_history"] = list(steps_by_version.values())
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
            changes = steps_by_version[v["version"]]["changes"] or {}
            moved = [f"{kind} {', '.join(map(str, changes[kind]))}" for kind in ("changed", "added", "removed")
                     if changes.get(kind)]
            typer.echo(f"  steps vs version {previous['version']}: " + ("; ".join(moved) or "none changed"))
        for c in (c for c in story["checks"] if c["rationale_id"] == v["id"]):
            typer.echo(f"  check {'ok  ' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}")
        for r in (r for r in story["reviews"] if r["rationale_id"] == v["id"]):
            scores = ", ".join(f"{k} {s}" for k, s in r["scores"].items())
            typer.echo(f"  review by {r['username']}: {r['verdict']} ({scores})")
            for dim, text in (r["comments"] or {}).items():
                if text:
                    typer.echo(f"    {dim}: {text}")
            for m in r["steps"] or []:
                if m["verdict"] == "ok":
                    typer.echo(f"    step {m['step']}: ok")
                    continue
                typer.echo(f"    step {m['step']}: error, {m['category']}, {m['severity']}: {m['note']}"
                           + (f" -> {m['correction']}" if m.get("correction") else ""))
        previous = v
    if story["decision"]:
        d = story["decision"]
        typer.echo(f"\ndecision: {d['kind']} by {d['decided_by']}: {d['reason']}")
    typer.echo("\nevents:")
    for e in story["events"]:
        change = f"{(e['before'] or {}).get('state', '')} -> {(e['after'] or {}).get('state', '')}" \
            if e["kind"] == "item.transition" else ""
        typer.echo(f"  {e['at']:%Y-%m-%d %H:%M:%S} {e['kind']} {change} by {e['actor']}")


def _plain_story(story: dict[str, Any]) -> dict[str, Any]:
    """The item's story as plain data (each record with its stored fields; reviews name their reviewer)."""
    item = story["item"].to_dict()
    item.pop("next_version", None)
    reviews = []
    for r in story["reviews"]:
        row = r.to_dict()
        row["username"] = row.pop("reviewer")
        row.pop("version", None)
        reviews.append(row)
    return {"item": item, "sources": story["sources"], "versions": [v.to_dict() for v in story["versions"]],
            "checks": [c.to_dict() for c in story["checks"]], "reviews": reviews,
            "decision": story["decision"].to_dict() if story["decision"] else None,
            "events": [e.to_dict() for e in story["events"]]}


@verbs.command("backup")
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


@verbs.command("restore")
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
