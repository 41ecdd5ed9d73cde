"""The ingest stage: question-bank files in, items out, in one transaction.

All or nothing: the first invalid record aborts the import with an error naming file, record, field
and what was expected, and nothing is written. With `skip_invalid`, valid records are imported and
every refused one is written, with its reason, to a rejects file. With `dry_run`, everything is read and
checked and nothing is written: the summary shows the first items as they would be stored.
Re-importing is idempotent: an item's id is the hash of its normalised content.
Annotation tools (Argilla, Label Studio) bring drafted versions and reviews too (ingest_reviews.py).
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from sqlalchemy import Connection, Engine

from clinreason.domain.items import Item, item_id
from clinreason.domain.lifecycle import ItemState, check_transition
from clinreason.domain.rubric import rubric_from_dict
from clinreason.stages.ingest_annotated import Annotations
from clinreason.stages.ingest_fields import LABELS
from clinreason.stages.ingest_formats import (
    ANNOTATION_FORMATS,
    FORMATS,
    GENERIC_FORMATS,
    NATIVE_FORMATS,
    ReadOptions,
    read_items,
)
from clinreason.stages.ingest_parallel import count_positions, read_batches, unpack_entry, use_reader_process
from clinreason.stages.ingest_readers import (
    FOLDER_FORMATS,
    TEXT_SUFFIXES,
    FileFormatError,
    RawRecord,
    RecordError,
    delimiter_name,
    detect_format,
    display_name,
    require_utf8,
    sniff_delimiter,
    utf8_problem,
)
from clinreason.stages.ingest_reviews import AnnotationConflict, AnnotationTally, AnnotationWriter
from clinreason.store import db
from clinreason.store import ingest as store
from clinreason.store.common import now
from clinreason.store.decisions import add_event, add_events
from clinreason.store.projects import latest_rubric, require_project

BATCH = 5000
#: the size of a typical record in a question-bank file, for estimating how many a file holds (a MedQA
#: record is about 1 KB, a synthetic one 450 bytes: an over-count only ever rebuilds an index that was not
#: worth it; the threshold is store.DEFER_MIN_RECORDS)
BYTES_PER_RECORD = 512
_SKIP_NAMES = {"readme", "source", "license", "licence", "license.upstream"}
#: the gold-answer positions are checked (one holding none of them is warned about) from this many records
POSITION_CHECK_RECORDS = 100
PREVIEW_ITEMS = 3
#: every item.imported event's `after`: one object, so a batch's events serialise it once (never mutated)
_IMPORTED = {"state": ItemState.IMPORTED.value}
_IMPORTED_STATE, _ESCALATED_STATE = ItemState.IMPORTED.value, ItemState.ESCALATED.value


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
    dry_run: bool = False
    #: gold answers by the position of their option (A = first), over every valid record with options
    gold_positions: Counter = field(default_factory=Counter)
    min_options: int | None = None  # the fewest options a valid record had
    warnings: list[str] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)  # the first items, as they are (would be) stored
    reject_samples: list[str] = field(default_factory=list)  # a dry run's first refusals (it writes no rejects file)
    annotations: AnnotationTally | None = None

    def gold_distribution(self) -> list[tuple[str, int, float]]:
        """(position, gold answers there, share) for every position some record has."""
        total = sum(self.gold_positions.values())
        if not total:
            return []
        last = max(LABELS.index(p) for p in self.gold_positions)
        span = max(last + 1, self.min_options or 0)
        return [(LABELS[i], self.gold_positions.get(LABELS[i], 0), self.gold_positions.get(LABELS[i], 0) / total)
                for i in range(span)]

    def check_positions(self) -> None:
        """Warn when a position every record has holds none of the gold answers, in a file big enough
        for that to mean something (an answer column read with the wrong base or labels)."""
        total = sum(self.gold_positions.values())
        if self.records < POSITION_CHECK_RECORDS or not total or not self.min_options:
            return
        empty = [LABELS[i] for i in range(self.min_options) if not self.gold_positions.get(LABELS[i])]
        for position in empty:
            self.warnings.append(f"position {position} holds none of the {total} gold answers of {self.records} "
                                 "records: check how the answers are read (--answer-base, --map answer=..., "
                                 "option labels)")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "files": self.files, "records": self.records, "added": self.added, "duplicates": self.duplicates,
            "sources_added": self.sources_added, "flagged_no_gold_answer": self.flagged,
            "rejected": self.rejected, "rejects_path": self.rejects_path,
            "added_by_source": dict(sorted(self.by_source.items())),
            "added_by_specialty": dict(sorted(self.by_specialty.items(), key=lambda kv: (-kv[1], kv[0]))),
            "skipped_files": self.skipped_files,
            "gold_positions": {p: n for p, n, _ in self.gold_distribution()},
            "warnings": self.warnings,
        }
        if self.annotations is not None:
            out.update(self.annotations.to_dict())
        if self.dry_run:
            out.update({"dry_run": True, "preview": self.preview, "reject_samples": self.reject_samples})
        return out


def plan_files(path: Path, fmt: str, *, split: str = "test") -> tuple[list[tuple[Path, str]], list[str]]:
    """Which files an import of `path` reads, and in which format. A directory is walked (sorted, so the
    order is stable); with `auto`, each file's layout is recognised and files that are not question
    banks (README, SOURCE, licences, answer keys) are skipped. MMLU folders hold dev/val/test splits:
    only `split` is read unless split is 'all'. A folder that is one dataset (a `datasets` folder, an
    Argilla dataset) is read as one."""
    if fmt not in FORMATS:
        raise ImportAborted(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if not path.exists():
        raise ImportAborted(f"{path}: no such file or directory")
    folders = sorted(p for p in path.rglob("*") if p.is_dir() and detect_format(p) in FOLDER_FORMATS) \
        if path.is_dir() else []
    one_dataset = path.is_dir() and (detect_format(path) in FOLDER_FORMATS or (fmt in FOLDER_FORMATS and not folders))
    if path.is_file() or one_dataset:
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
        if any(parent in folders for parent in child.parents):
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
        if fmt != "auto" and detected not in (fmt, *GENERIC_FORMATS) and fmt not in GENERIC_FORMATS:
            skipped.append(f"{child.relative_to(path)} (looks like {detected}, not {fmt})")
            continue
        if chosen == "mmlu" and split != "all":
            stem = child.stem
            if not stem.endswith(f"_{split}"):
                skipped.append(f"{child.relative_to(path)} (MMLU split other than '{split}'; use --split all)")
                continue
        planned.append((child, chosen))
    for sub in folders:
        if fmt in ("auto", detect_format(sub)):
            planned.append((sub, str(detect_format(sub))))
    if not planned:
        raise ImportAborted(f"{path}: no question files found (skipped: {', '.join(skipped) or 'nothing'})")
    return planned, skipped


def check_options(fmt: str, *, mapping: dict[str, str], delimiter: str | None, records: str | None,
                  answer_base: int | None, question_map: dict[str, str]) -> None:
    """Refuse flags that mean nothing for the format (a typo should not pass silently)."""
    if records is not None and fmt not in ("json", "auto"):
        raise ImportAborted(f"--records: only for --format json (one JSON document), not {fmt}")
    if delimiter is not None and fmt not in ("csv", "tsv", "auto"):
        raise ImportAborted(f"--delimiter: only for --format csv or tsv, not {fmt}")
    if answer_base is not None and answer_base not in (0, 1):
        raise ImportAborted(f"--answer-base: 0 or 1, got {answer_base}")
    if answer_base is not None and fmt in NATIVE_FORMATS:
        raise ImportAborted(f"--answer-base: the {fmt} layout has a known answer format; the flag is for the "
                            "mapped layouts (jsonl, json, csv, tsv, parquet, hf, argilla, labelstudio)")
    if (question_map or "rationale" in mapping) and fmt not in (*ANNOTATION_FORMATS, "auto"):
        flag = "--map-question" if question_map else "--map rationale"
        raise ImportAborted(f"{flag}: only for --format argilla or labelstudio, not {fmt}")


def _not_utf8(path: Path) -> str | None:
    """Why a text-looking file is not UTF-8, so a refusal can say so instead of 'layout not recognised'."""
    if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
        return utf8_problem(path)
    return None


@dataclass
class _Pending:
    item: Item
    raw: RawRecord


@dataclass
class _Run:
    """What one import remembers across batches."""

    project_id: int
    project: str
    actor: str
    dry_run: bool
    summary: ImportSummary
    seen: set[str] = field(default_factory=set)  # a dry run's new item ids (nothing is stored to ask about)
    writer: AnnotationWriter | None = None
    #: the current batch's options as the store writes them (item id -> text), where the reader process wrote them
    options_json: dict[str, str] = field(default_factory=dict)
    #: what the reader process sends with a batch of rows: gold positions, fewest options, preview entries
    extras: dict[str, Any] = field(default_factory=dict)
    #: the import events' constant JSON values and the transition's detail, in the driver's form
    event_json: dict[str, Any] = field(default_factory=dict)


def import_path(engine: Engine, *, project: str, path: Path, fmt: str = "auto", mapping: dict[str, str] | None = None,
                source: str | None = None, license: str | None = None, skip_invalid: bool = False,
                rejects_path: Path | None = None, split: str = "test", actor: str = "cli",
                progress_factory: Callable[[list[tuple[Path, str]]], Any] | None = None,
                delimiter: str | None = None, records: str | None = None, answer_base: int | None = None,
                question_map: dict[str, str] | None = None, dry_run: bool = False) -> ImportSummary:
    """Import a file or a folder of files into `project` as one transaction (`dry_run`: read and check
    everything, write nothing)."""
    mapping, question_map = dict(mapping or {}), dict(question_map or {})
    check_options(fmt, mapping=mapping, delimiter=delimiter, records=records, answer_base=answer_base,
                  question_map=question_map)
    planned, skipped = plan_files(path, fmt, split=split)
    summary = ImportSummary(files=[f"{display_name(p)} ({f})" for p, f in planned], skipped_files=skipped,
                            dry_run=dry_run)
    rejects_fh = None
    rejects_file = rejects_path or Path(f"rejects-{path.stem or 'import'}.jsonl")
    if skip_invalid and not dry_run:
        summary.rejects_path = str(rejects_file)
    progress = progress_factory(planned) if progress_factory else None
    try:
        with (db.transaction(engine) if not dry_run else db.read_snapshot(engine)) as conn, \
                (store.bulk_import(conn, expected_records=_expected_records(planned)) if not dry_run
                 else nullcontext()):
            proj = require_project(conn, name=project)
            run = _Run(proj["id"], project, actor, dry_run, summary)
            for index, (file_path, file_fmt) in enumerate(planned):
                if progress:
                    progress.start_file(file_path)
                options = ReadOptions(mapping=mapping, source=source, license=license, records=records,
                                      answer_base=answer_base, question_map=question_map,
                                      delimiter=_delimiter(file_path, file_fmt, delimiter))
                if options.delimiter is not None:
                    summary.files[index] = (f"{display_name(file_path)} ({file_fmt}, delimiter "
                                            f"{delimiter_name(options.delimiter)})")
                if file_fmt in ANNOTATION_FORMATS:
                    rubric = rubric_from_dict(latest_rubric(conn, project_id=proj["id"]))
                    options = ReadOptions(**{**options.__dict__, "rubric": rubric})
                    summary.annotations = summary.annotations or AnnotationTally()
                    run.writer = AnnotationWriter(project_id=proj["id"], tool=file_fmt, rubric_version=rubric.version,
                                                  actor=actor, dry_run=dry_run, tally=summary.annotations)
                else:
                    run.writer = None
                hashed = run.writer is None and use_reader_process(file_path, file_fmt)
                # rows: the reader process sends each record as the rows it stores (the JSON columns
                # serialised as this engine's serialiser does): the batch is written by `_write_rows`
                rows = hashed and store.writes_compact_json(conn)
                if hashed:  # a large file: read, checked and hashed in a second process
                    batches = _counted(read_batches(file_path, file_fmt, options=options, project=project,
                                                    batch=BATCH, progress=progress.advance if progress else None,
                                                    options_json=run.options_json,
                                                    project_id=proj["id"] if rows else None, extras=run.extras),
                                       summary)
                else:
                    batches = _batches(read_items(file_path, file_fmt, options=options,
                                                  progress=progress.advance if progress else None), summary)
                with closing(batches):  # a refused import stops a reader process at once
                    for batch in batches:
                        valid: list[Any] = []  # _Pending, or a row tuple of the reader process
                        for entry in batch:
                            if isinstance(entry, RecordError):
                                if not skip_invalid:
                                    raise ImportAborted(str(entry))
                                summary.rejected += 1
                                if dry_run:
                                    if len(summary.reject_samples) < PREVIEW_ITEMS:
                                        summary.reject_samples.append(str(entry))
                                    continue
                                if rejects_fh is None:
                                    rejects_fh = open(rejects_file, "w", encoding="utf-8")  # noqa: SIM115
                                rejects_fh.write(json.dumps({
                                    "file": entry.file, "record": entry.record, "locator": entry.locator,
                                    "field": entry.field, "error": str(entry)}, ensure_ascii=False) + "\n")
                            else:
                                valid.append(entry if rows else _Pending(item=entry[1], raw=entry[0]))
                        if rows:
                            _write_rows(conn, run, valid)
                        else:
                            _write_batch(conn, run, valid, hashed=hashed)
                        if progress:
                            progress.records(len(batch))
            summary.check_positions()
            if not dry_run:
                add_event(conn, project_id=proj["id"], kind="import.completed", actor=actor,
                          detail={k: v for k, v in summary.to_dict().items() if k != "added_by_specialty"})
    except (FileFormatError, AnnotationConflict) as exc:
        raise ImportAborted(str(exc)) from None
    finally:
        if rejects_fh is not None:
            rejects_fh.close()
        if progress:
            progress.close()
    return summary


def _expected_records(planned: list[tuple[Path, str]]) -> int:
    """How many records an import of these files is expected to bring, to decide whether a SQLite database
    builds its secondary indexes once at the end (store.bulk_import): one per `BYTES_PER_RECORD` bytes
    of the files (a folder dataset counts nothing). An import with an annotation tool's file counts none:
    what it writes besides items reads the tables by those indexes."""
    if any(fmt in ANNOTATION_FORMATS for _, fmt in planned):
        return 0
    total = 0
    for path, _ in planned:
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            pass
    return total // BYTES_PER_RECORD


def _delimiter(path: Path, fmt: str, given: str | None) -> str | None:
    """The delimiter a csv/tsv file is read with: the one given, tab for tsv, else sniffed."""
    if fmt not in ("csv", "tsv"):
        return None
    if given is not None:
        return given
    if fmt == "tsv":
        return "\t"
    require_utf8(path)
    return sniff_delimiter(path)


def _batches(stream: Iterator, summary: ImportSummary) -> Generator[list, None, None]:
    batch: list = []
    for entry in stream:
        summary.records += 1
        batch.append(entry)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _counted(batches: Generator[list, None, None], summary: ImportSummary) -> Generator[list, None, None]:
    with closing(batches):
        for batch in batches:
            summary.records += len(batch)
            yield batch


def _preview(p: _Pending) -> dict[str, Any]:
    it, notes = p.item, p.raw.annotations
    src = it.sources[0]
    out: dict[str, Any] = {
        "id": it.id, "file": src.file, "record": p.raw.number, "locator": p.raw.locator, "state": it.state,
        "question": it.question, "options": [[k, v] for k, v in it.options.items()], "answer": it.answer_labels,
        "answer_text": it.answer_text, "language": it.language, "specialty": it.specialty,
        "context": it.context, "explanation": it.reference_explanation, "metadata": it.metadata,
        "source": src.source}
    if isinstance(notes, Annotations):
        out["versions"] = len(notes.drafts)
        out["reviews"] = len(notes.reviews)
    return out


def _write_batch(conn: Connection, run: _Run, pending: list[_Pending], *, hashed: bool = False) -> None:
    """Insert new items, attach new source references to existing ones, then the drafts and reviews an
    annotation tool's records carry. Existence is asked of the database per batch, so memory stays
    bounded by the batch, not by the file (a dry run, which stores nothing, remembers the ids it met)."""
    summary = run.summary
    if not pending:
        return
    project = run.project
    for p in pending:
        it = p.item
        if not hashed:  # (the reader process sets both)
            it.content_hash = it.compute_hash()
            it.id = item_id(project, it.content_hash)
        summary.min_options = count_positions(summary.gold_positions, summary.min_options, it)
    ids = list({p.item.id for p in pending})
    existing = store.existing_item_ids(conn, item_ids=ids) | (run.seen & set(ids))
    new_items: dict[str, Item] = {}
    flag_reasons: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    refs = []
    imported, escalated = _IMPORTED_STATE, _ESCALATED_STATE
    project_id, actor, writer = run.project_id, run.actor, run.writer
    by_source, by_specialty = summary.by_source, summary.by_specialty
    added = duplicates = flagged_count = 0
    for p in pending:
        it = p.item
        src = it.sources[0]
        refs.append((it.id, src))
        if it.id in existing or it.id in new_items:
            duplicates += 1
            continue
        flagged = not (it.answer_labels or it.answer_text)  # Item.has_gold_answer
        if flagged:
            check_transition(ItemState.IMPORTED, ItemState.ESCALATED)
            it.state = escalated
            flag_reasons[it.id] = "no gold answer in the source record"
        else:
            it.state = imported
        new_items[it.id] = it
        if writer is not None:
            writer.added[it.id] = it.state
        events.append({"project_id": project_id, "item_id": it.id, "kind": "item.imported", "actor": actor,
                       "after": _IMPORTED,
                       "detail": {"source": src.source, "file": src.file, "record": src.record}})
        if flagged:
            flagged_count += 1
            events.append({"project_id": project_id, "item_id": it.id, "kind": "item.transition",
                           "actor": actor, "before": {"state": "imported"}, "after": {"state": "escalated"},
                           "detail": {"reason": "no gold answer: flagged question, sent to adjudication"}})
        added += 1
        by_source[src.source] += 1
        if it.specialty:
            by_specialty[it.specialty] += 1
    summary.duplicates += duplicates
    summary.flagged += flagged_count
    summary.added += added
    for p in pending:
        if len(summary.preview) >= PREVIEW_ITEMS:
            break
        if p.item.id in new_items and isinstance(p.raw.annotations, Annotations) and p.raw.annotations.drafts \
                and p.item.state == ItemState.IMPORTED.value:
            p.item.state = ItemState.SCREENING.value  # where the import moves an item that brings drafts
            summary.preview.append(_preview(p))
            p.item.state = ItemState.IMPORTED.value
        else:
            summary.preview.append(_preview(p))
    if run.dry_run:
        run.seen.update(new_items)
    else:
        store.add_items(conn, project_id=run.project_id, new=list(new_items.values()), flag_reasons=flag_reasons,
                        options_json=run.options_json if hashed else None)
        # source references: keep those not already stored (idempotent re-import adds none)
        summary.sources_added += sum(item_id not in new_items for item_id in store.add_new_sources(
            conn, refs=refs, new_item_ids=new_items))
        add_events(conn, events)
    if run.writer is not None:
        run.writer.write(conn, [(p.raw, p.item) for p in pending])


_NO_GOLD_DETAIL = {"reason": "no gold answer: flagged question, sent to adjudication"}


def _write_rows(conn: Connection, run: _Run, entries: list[tuple[Any, ...]]) -> None:
    """`_write_batch` for records the reader process sent as rows (`ingest_parallel._row`): the same
    rows, events, counts and preview, with no per-record object built here."""
    summary = run.summary
    extras = run.extras
    for position, n in extras["positions"].items():
        summary.gold_positions[position] += n
    if extras["fewest"] is not None:
        summary.min_options = extras["fewest"] if summary.min_options is None \
            else min(summary.min_options, extras["fewest"])
    if not entries:
        return
    ids = list({e[0] for e in entries})
    existing = store.existing_item_ids(conn, item_ids=ids) if not run.dry_run else run.seen & set(ids)
    values = run.event_json
    if not values:
        values.update(none=store.event_value(conn, "before", None),
                      imported=store.event_value(conn, "after", _IMPORTED),
                      escalated=store.event_value(conn, "after", {"state": _ESCALATED_STATE}),
                      detail=store.event_value(conn, "detail", _NO_GOLD_DETAIL))
    none, imported, escalated, detail = values["none"], values["imported"], values["escalated"], values["detail"]
    ts = store.event_value(conn, "at", now())
    stamps = store.item_timestamps(conn)
    project_id, actor = run.project_id, run.actor
    by_source, by_specialty = summary.by_source, summary.by_specialty
    new_ids: set[str] = set()
    item_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    refs: list[tuple[Any, ...]] = []
    fresh: list[bool] = []  # whether each of the batch's first valid records was new (its preview's state)
    duplicates = flagged_count = 0
    for id_, row, ref, event_detail, flagged in entries:
        refs.append(ref)
        new = id_ not in existing and id_ not in new_ids
        if len(fresh) < PREVIEW_ITEMS:
            fresh.append(new)
        if not new:
            duplicates += 1
            continue
        new_ids.add(id_)
        item_rows.append(row + stamps)
        event_rows.append((project_id, id_, "item.imported", actor, none, imported, event_detail, ts))
        if flagged:
            flagged_count += 1
            event_rows.append((project_id, id_, "item.transition", actor, imported, escalated, detail, ts))
        by_source[ref[1]] += 1
        if row[8]:  # specialty
            by_specialty[row[8]] += 1
    if flagged_count:
        check_transition(ItemState.IMPORTED, ItemState.ESCALATED)
    summary.duplicates += duplicates
    summary.flagged += flagged_count
    summary.added += len(item_rows)
    for (_, packed), new in zip(extras["previews"], fresh):
        if len(summary.preview) >= PREVIEW_ITEMS:
            break
        raw, it = unpack_entry(packed)
        if new:
            it.state = _ESCALATED_STATE if not (it.answer_labels or it.answer_text) else _IMPORTED_STATE
        summary.preview.append(_preview(_Pending(item=it, raw=raw)))
    if run.dry_run:
        run.seen.update(new_ids)
        return
    store.add_item_rows(conn, item_rows)
    summary.sources_added += sum(item_id not in new_ids for item_id in store.add_new_source_rows(
        conn, refs=refs, new_item_ids=new_ids))
    store.add_event_rows(conn, event_rows)
