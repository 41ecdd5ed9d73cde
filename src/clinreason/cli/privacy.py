"""CLI verbs for the privacy gate: `clinreason privacy list|show|release|edit|exclude|scan`. The group is added
to the root app by `clinreason.cli`; the work is in stages/privacy.py."""

import getpass
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail

privacy_app = typer.Typer(help="The privacy gate: items held because the text an LLM request would carry has "
                               "identifiers in it (record numbers, IDs, phones, e-mail, exact dates, ages over 89, "
                               "addresses, URLs, IPs), and what an admin does with them.", no_args_is_help=True)

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded with your name in the item's events)")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "cli"


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@privacy_app.command("list")
def listing(json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
            db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Items held by the privacy gate, with what was found in them (never the identifiers themselves)."""
    from clinreason.stages import privacy

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        rows = privacy.held_items(conn, project_id=ctx.project_row()["id"])
    if json_out:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=_plain))
        return
    if not rows:
        typer.echo("no item is held by the privacy gate")
    for h in rows:
        typer.echo(f"{h['item_id']}  {h['kind']:<10} to {h['endpoint']:<28} {h['summary']}  "
                   f"(held {h['created_at']:%Y-%m-%d %H:%M})")
    if rows:
        typer.echo("see one with `clinreason privacy show ITEM`; then release, edit or exclude it")


@privacy_app.command("show")
def show(item_id: Annotated[str, typer.Argument(help="The item")],
         json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
         db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """The item's text with each finding of its open hold marked »like this«, and its privacy history."""
    from clinreason.stages import privacy

    ctx = _context(db, project, config)
    try:
        with ctx.engine.connect() as conn:
            view = privacy.hold_view(conn, project_id=ctx.project_row()["id"], item_id=item_id)
    except privacy.PrivacyError as exc:
        _fail(str(exc))
    if json_out:
        out = {**view, "item": {"id": view["item"].id, "state": view["item"].state}}
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2, default=_plain))
        return
    item, hold = view["item"], view["hold"]
    typer.echo(f"item {item.id} — {item.state}")
    if hold is None:
        typer.echo("no open privacy hold")
    else:
        typer.echo(f"held before its {hold['kind']} request to {hold['endpoint']}: {privacy.summary(hold['findings'])}")
        for segment in view["segments"]:
            if any("finding" in p for p in segment["pieces"]):
                text = "".join(f"»{p['text']}«[{p['finding']['type']} {p['finding']['score']:.2f}]"
                               if "finding" in p else p["text"] for p in segment["pieces"])
                typer.echo(f"  {segment['name']}: {text}")
        for f in view["elsewhere"]:
            typer.echo(f"  {f['segment']}: {f['type']} at {f['start']}-{f['end']} ({f['preview']}, score {f['score']:.2f})")
    for r in view["records"]:
        typer.echo(f"  {r['created_at']:%Y-%m-%d %H:%M} {r['status']:<9} {r['kind']:<10} {privacy.summary(r['findings'])}"
                   + (f" — {r['resolved_by']}: {r['reason']}" if r["resolved_by"] else ""))
    for rev in view["revisions"]:
        typer.echo(f"  revision {rev['revision']} replaced by {rev['replaced_by']} on {rev['replaced_at']:%Y-%m-%d %H:%M}: "
                   f"{rev['reason']}")


def _act(action: str, item_id: str, reason: str, db, project, config, **kwargs: Any) -> dict[str, Any]:
    from clinreason.stages import privacy
    from clinreason.store import db as store_db

    ctx = _context(db, project, config)
    work = {"release": privacy.release, "exclude": privacy.exclude, "edit": privacy.edit}[action]
    project_id = ctx.project_row()["id"]  # read before the write transaction (SQLite: one at a time)
    try:
        with store_db.transaction(ctx.engine) as conn:
            return work(conn, project_id=project_id, item_id=item_id, actor=_actor(), reason=reason, **kwargs)
    except privacy.PrivacyError as exc:
        _fail(str(exc))


@privacy_app.command("release")
def release(item_id: Annotated[str, typer.Argument(help="The held item")], reason: ReasonOpt,
            db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Let a held item through: its request goes out at the next run. What was found in it is not held again
    for this item (anything new is)."""
    done = _act("release", item_id, reason, db, project, config)
    typer.echo(f"released item {done['item_id']} ({done['findings']} finding(s)); it is '{done['state']}' again: "
               "run `clinreason run` (or generate / regenerate / screen) to send it")


@privacy_app.command("exclude")
def exclude(item_id: Annotated[str, typer.Argument(help="The held item")], reason: ReasonOpt,
            db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Exclude a held item from the dataset (final; recorded as a decision with the reason)."""
    done = _act("exclude", item_id, reason, db, project, config)
    typer.echo(f"excluded item {done['item_id']}")


def _read(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read the new {what} ({exc})")


@privacy_app.command("edit")
def edit(
    item_id: Annotated[str, typer.Argument(help="The held item")],
    reason: ReasonOpt,
    question: Annotated[Optional[str], typer.Option("--question", help="The new question text")] = None,
    question_file: Annotated[Optional[Path], typer.Option("--question-file", help="A file holding the new question text")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", help="LABEL=new text (repeatable)")] = None,
    context_file: Annotated[Optional[Path], typer.Option("--context-file", help="A file holding the new context")] = None,
    reference_file: Annotated[Optional[Path], typer.Option("--reference-file", help="A file holding the new reference explanation")] = None,
    answer_text: Annotated[Optional[str], typer.Option("--answer-text", help="The new free-text gold answer")] = None,
    redact: Annotated[bool, typer.Option("--redact", help="Replace every finding in the item's text by [TYPE]")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Rewrite a held item's text (the old content is kept as a revision); it is scanned again before its
    request goes out."""
    if question is not None and question_file is not None:
        _fail("give --question or --question-file, not both", 2)
    changes: dict[str, Any] = {}
    text = question if question is not None else _read(question_file, "question")
    if text is not None:
        changes["question"] = text
    if option:
        pairs = {}
        for entry in option:
            label, sep, value = entry.partition("=")
            if not sep or not label.strip():
                _fail(f"--option {entry!r}: expected LABEL=text, e.g. --option 'B=Chest pain'", 2)
            pairs[label.strip()] = value
        changes["options"] = pairs
    for key, path in (("context", context_file), ("reference_explanation", reference_file)):
        content = _read(path, key.replace("_", " "))
        if content is not None:
            changes[key] = content
    if answer_text is not None:
        changes["answer_text"] = answer_text
    done = _act("edit", item_id, reason, db, project, config, changes=changes, redact=redact)
    typer.echo(f"edited item {done['item_id']} ({', '.join(done['fields'])}); the previous text is revision "
               f"{done['revision']}; it is '{done['state']}' again and will be scanned before it is sent")


@privacy_app.command("scan")
def scan(
    path: Annotated[Optional[Path], typer.Argument(help="A question-bank file or folder to scan instead of the project's items")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="The bank's format, as for `import`")] = "auto",
    reference: Annotated[Optional[bool], typer.Option("--reference/--no-reference", help="Scan the banks' explanations too (default: as [generate] use_reference_explanation)")] = None,
    show_text: Annotated[bool, typer.Option("--show-text", help="Print what was found (it stays on this machine; nothing is stored)")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """A dry run of the gate: what it would hold, per item, without sending, storing or changing anything
    (a bank file or folder, or the project's items as drafting would send them)."""
    from clinreason.cli.common import _settings
    from clinreason.privacy.scan import ScannerError
    from clinreason.stages import privacy

    try:
        if path is None:
            from clinreason.store import items as item_store

            ctx = _context(db, project, config)
            pc = ctx.settings.project_config
            include = pc.generate.use_reference_explanation if reference is None else reference
            with ctx.engine.connect() as conn:
                found_items = item_store.project_items(conn, project_id=ctx.project_row()["id"])
            requests = [(i.id, i.language, privacy.item_segments(i, include_reference=include)) for i in found_items]
        else:
            pc = _settings(db, project, config).project_config
            include = pc.generate.use_reference_explanation if reference is None else reference
            requests = privacy.bank_requests(path, format, include_reference=include)
        policy = privacy.policy_for(pc)
        scanner = privacy.get_scanner(ner_models=policy.ner_models, min_score=policy.min_score)
    except (privacy.PrivacyError, ScannerError) as exc:
        _fail(str(exc))
    report = privacy.dry_run(requests, scanner, ignore=policy.ignore)
    if not show_text:
        for h in report["held"]:
            h.pop("found")
    if json_out:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for note in report["notes"]:
        typer.echo(f"note: {note}", err=True)
    for h in report["held"]:
        shown = h.get("found") or h["findings"]
        typer.echo(f"{h['item']}: " + "; ".join(
            f"{f['type']} in {f['segment']} ({f.get('text') or f.get('preview')}: {f['why']})" for f in shown))
    typer.echo(f"{report['would_hold']} of {report['items']} item(s) would be held ({report['rate']:.2%})"
               + (": " + ", ".join(f"{t} {n}" for t, n in report["by_type"].items()) if report["by_type"] else ""))
