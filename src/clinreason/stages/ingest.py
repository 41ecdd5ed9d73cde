"""The ingest stage: question-bank files in, items out, in one transaction.

All or nothing: the first invalid record aborts the import with an error naming file, record, field
and what was expected, and nothing is written. With `skip_invalid`, valid records are imported and
every refused one is written, with its reason, to a rejects file.
Re-importing is idempotent: an item's id is the hash of its normalised content.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, Engine

from clinreason.domain.items import Item, item_id
from clinreason.domain.lifecycle import ItemState, check_transition
from clinreason.stages.ingest_formats import FORMATS, read_items
from clinreason.stages.ingest_readers import (
    TEXT_SUFFIXES,
    FileFormatError,
    RawRecord,
    RecordError,
    detect_format,
    display_name,
    utf8_problem,
)
from clinreason.store import db
from clinreason.store import ingest as store
from clinreason.store.decisions import add_event, add_events
from clinreason.store.projects import require_project

BATCH = 1000
_SKIP_NAMES = {"readme", "source", "license", "licence", "license.upstream"}


class ImportAborted(RuntimeError):
    """The import was refused; nothing was written."""


@dataclass
class ImportSummary:
    files: list[str] = field(default_factory=list)
    records: int = 0
    added: int = 0
    duplicates: int = 0  # records whose item already existed (in the database or earlier in this import)
    sources_added: int = 0  # duplicates that brought a new source reference to an existing item
    flagged: int = 0  # items without a gold answer, sent to adjudication
    rejected: int = 0
    rejects_path: str | None = None
    by_source: Counter = field(default_factory=Counter)
    by_specialty: Counter = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "records": self.records, "added": self.added, "duplicates": self.duplicates,
            "sources_added": self.sources_added, "flagged_no_gold_answer": self.flagged,
            "rejected": self.rejected, "rejects_path": self.rejects_path,
            "added_by_source": dict(sorted(self.by_source.items())),
            "added_by_specialty": dict(sorted(self.by_specialty.items(), key=lambda kv: (-kv[1], kv[0]))),
            "skipped_files": self.skipped_files,
        }


def plan_files(path: Path, fmt: str, *, split: str = "test") -> tuple[list[tuple[Path, str]], list[str]]:
    """Which files an import of `path` reads, and in which format. A directory is walked (sorted, so the
    order is stable); with `auto`, each file's layout is recognised and files that are not question
    banks (README, SOURCE, licences, answer keys) are skipped. MMLU folders hold dev/val/test splits:
    only `split` is read unless split is 'all'."""
    if fmt not in FORMATS:
        raise ImportAborted(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if not path.exists():
        raise ImportAborted(f"{path}: no such file or directory")
    if path.is_file() or (path.is_dir() and detect_format(path) == "hf"):
        chosen = fmt if fmt != "auto" else detect_format(path)
        if chosen is None:
            why = _not_utf8(path)
            if why:
                raise ImportAborted(f"{display_name(path)}: not UTF-8 text ({why}); re-save it as UTF-8")
            raise ImportAborted(f"{display_name(path)}: cannot recognise the layout; pass --format "
                                f"({', '.join(f for f in FORMATS if f != 'auto')})")
        return [(path, chosen)], []
    planned: list[tuple[Path, str]] = []
    skipped: list[str] = []
    for child in sorted(path.rglob("*")):
        if child.name.startswith(".") or any(p.startswith(".") for p in child.relative_to(path).parts):
            continue
        if child.is_dir():
            continue
        if any(parent != path and detect_format(parent) == "hf" for parent in child.parents):
            continue
        if child.stem.lower() in _SKIP_NAMES or child.name.lower() in _SKIP_NAMES:
            skipped.append(f"{child.relative_to(path)} (not a question file)")
            continue
        detected = detect_format(child)
        chosen = fmt if fmt != "auto" else detected
        if fmt != "auto" and detected is None:
            skipped.append(f"{child.relative_to(path)} (not a {fmt} file)")
            continue
        if chosen is None:
            why = _not_utf8(child)
            skipped.append(f"{child.relative_to(path)} ({'not UTF-8 text: ' + why if why else 'layout not recognised'})")
            continue
        if fmt != "auto" and detected not in (fmt, "jsonl", "csv") and fmt not in ("jsonl", "csv"):
            skipped.append(f"{child.relative_to(path)} (looks like {detected}, not {fmt})")
            continue
        if chosen == "mmlu" and split != "all":
            stem = child.stem
            if not stem.endswith(f"_{split}"):
                skipped.append(f"{child.relative_to(path)} (MMLU split other than '{split}'; use --split all)")
                continue
        planned.append((child, chosen))
    for sub in sorted(p for p in path.rglob("*") if p.is_dir() and detect_format(p) == "hf"):
        if fmt in ("auto", "hf"):
            planned.append((sub, "hf"))
    if not planned:
        raise ImportAborted(f"{path}: no question files found (skipped: {', '.join(skipped) or 'nothing'})")
    return planned, skipped


def _not_utf8(path: Path) -> str | None:
    """Why a text-looking file is not UTF-8, so a refusal can say so instead of 'layout not recognised'."""
    if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
        return utf8_problem(path)
    return None


@dataclass
class _Pending:
    item: Item
    raw: RawRecord


def import_path(engine: Engine, *, project: str, path: Path, fmt: str = "auto", mapping: dict[str, str] | None = None,
                source: str | None = None, license: str | None = None, skip_invalid: bool = False,
                rejects_path: Path | None = None, split: str = "test", actor: str = "cli",
                progress_factory: Callable[[list[tuple[Path, str]]], Any] | None = None) -> ImportSummary:
    """Import a file or a folder of files into `project` as one transaction."""
    planned, skipped = plan_files(path, fmt, split=split)
    summary = ImportSummary(files=[f"{display_name(p)} ({f})" for p, f in planned], skipped_files=skipped)
    rejects_fh = None
    rejects_file = rejects_path or Path(f"rejects-{path.stem or 'import'}.jsonl")
    if skip_invalid:
        summary.rejects_path = str(rejects_file)
    progress = progress_factory(planned) if progress_factory else None
    try:
        with db.transaction(engine) as conn:
            proj = require_project(conn, name=project)
            for file_path, file_fmt in planned:
                if progress:
                    progress.start_file(file_path)
                stream = read_items(file_path, file_fmt, mapping=mapping, source=source, license=license,
                                    progress=progress.advance if progress else None)
                for batch in _batches(stream, summary):
                    valid: list[_Pending] = []
                    for entry in batch:
                        if isinstance(entry, RecordError):
                            if not skip_invalid:
                                raise ImportAborted(str(entry))
                            summary.rejected += 1
                            if rejects_fh is None:
                                rejects_fh = open(rejects_file, "w", encoding="utf-8")  # noqa: SIM115
                            rejects_fh.write(json.dumps({
                                "file": entry.file, "record": entry.record, "locator": entry.locator,
                                "field": entry.field, "error": str(entry)}, ensure_ascii=False) + "\n")
                        else:
                            valid.append(_Pending(item=entry[1], raw=entry[0]))
                    _write_batch(conn, proj["id"], project, valid, summary, actor)
                    if progress:
                        progress.records(len(batch))
            add_event(conn, project_id=proj["id"], kind="import.completed", actor=actor,
                           detail={k: v for k, v in summary.to_dict().items() if k != "added_by_specialty"})
    except FileFormatError as exc:
        raise ImportAborted(str(exc)) from None
    finally:
        if rejects_fh is not None:
            rejects_fh.close()
        if progress:
            progress.close()
    return summary


def _batches(stream: Iterator, summary: ImportSummary) -> Iterator[list]:
    batch: list = []
    for entry in stream:
        summary.records += 1
        batch.append(entry)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_batch(conn: Connection, project_id: int, project: str, pending: list[_Pending], summary: ImportSummary,
                 actor: str) -> None:
    """Insert new items, attach new source references to existing ones. Existence is asked of the
    database per batch, so memory stays bounded by the batch, not by the file."""
    if not pending:
        return
    for p in pending:
        p.item.content_hash = p.item.compute_hash()
        p.item.id = item_id(project, p.item.content_hash)
    ids = list({p.item.id for p in pending})
    existing = store.existing_item_ids(conn, item_ids=ids)
    new_items: dict[str, Item] = {}
    flag_reasons: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    refs = []
    for p in pending:
        it = p.item
        src = it.sources[0]
        refs.append((it.id, src))
        if it.id in existing or it.id in new_items:
            summary.duplicates += 1
            continue
        flagged = not it.has_gold_answer
        state = ItemState.IMPORTED
        if flagged:
            check_transition(ItemState.IMPORTED, ItemState.ESCALATED)
            state = ItemState.ESCALATED
            flag_reasons[it.id] = "no gold answer in the source record"
        it.state = state.value
        new_items[it.id] = it
        events.append({"project_id": project_id, "item_id": it.id, "kind": "item.imported", "actor": actor,
                       "after": {"state": ItemState.IMPORTED.value},
                       "detail": {"source": src.source, "file": src.file, "record": src.record}})
        if flagged:
            summary.flagged += 1
            events.append({"project_id": project_id, "item_id": it.id, "kind": "item.transition", "actor": actor,
                           "before": {"state": "imported"}, "after": {"state": "escalated"},
                           "detail": {"reason": "no gold answer: flagged question, sent to adjudication"}})
        summary.added += 1
        summary.by_source[src.source] += 1
        if it.specialty:
            summary.by_specialty[it.specialty] += 1
    store.add_items(conn, project_id=project_id, new=list(new_items.values()), flag_reasons=flag_reasons)
    # source references: keep those not already stored (idempotent re-import adds none)
    summary.sources_added += sum(item_id not in new_items for item_id in store.add_new_sources(conn, refs=refs))
    add_events(conn, events)
