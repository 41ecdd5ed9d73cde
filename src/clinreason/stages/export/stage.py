"""The export stage: accepted items -> a dataset folder (jsonl | parquet | hf | sft | dpo | prm) with its card.

One row per accepted item: question, options, gold answer, the accepted rationale (steps + text) and final
answer, per-dimension scores (mean, and per reviewer under anonymised ids), consensus type, rounds,
provenance (model, prompt hash, parameters), source and licence, and optionally the version history
(every version with its reviews and their step marks). dpo and prm read that history: a pair per rejected
version, a step-labelled record per reviewed version.

It streams: rows are built chunk by chunk (`rows.Reader`) and written as they come (Parquet in row
groups), so memory stays flat at any size. Output is deterministic: rows sorted by item id, fixed key order, no clock
readings, splits chosen by a hash of the item id within each stratum (specialty × source) — running it
twice on the same database gives byte-identical files.

The card quotes the project's review scan. Where that is a full scan of many reviews (no kept state stored),
a child process adds it up on the other core while the rows are written (`analytics.kept_child`); its
numbers are used only if the export's own snapshot sees every review it counted, so the card is the same
bytes either way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clinreason.analytics import kept, kept_child
from clinreason.analytics.scan import rubric_dimensions
from clinreason.stages.export.card import card_numbers, write_card
from clinreason.stages.export.common import (
    ANNOTATION_FORMATS,
    FORMATS,
    HISTORY_FORMATS,
    MANIFEST,
    SPLIT_NAMES,
    ExportError,
    ExportOptions,
    safe_path,
)
from clinreason.stages.export.formats import HFSink, ParquetSink, open_sink
from clinreason.stages.export.rows import Reader
from clinreason.store import db as store_db
from clinreason.store import projects as store_projects


@dataclass
class ExportSummary:
    """What was written, for the card and the command's report."""

    fmt: str
    rows: dict[str, int] = field(default_factory=dict)  # items per split
    records: dict[str, int] = field(default_factory=dict)  # lines/rows written per split (pairs for dpo)
    files: list[str] = field(default_factory=list)
    by_source: Counter = field(default_factory=Counter)
    licenses: dict[str, Counter] = field(default_factory=dict)
    languages: Counter = field(default_factory=Counter)
    specialties: Counter = field(default_factory=Counter)
    consensus: Counter = field(default_factory=Counter)
    pairs: int = 0
    step_labels: Counter = field(default_factory=Counter)  # prm: "ok" | "error" | "unknown" -> steps written
    seconds: float = 0.0
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def to_dict(self) -> dict[str, Any]:
        out = {"format": self.fmt, "rows": dict(self.rows), "records": dict(self.records), "total": self.total,
               "files": list(self.files),
               "filters": self.filters, "seconds": round(self.seconds, 3)}
        if self.fmt == "prm":
            out["step_labels"] = {k: self.step_labels.get(k, 0) for k in ("ok", "error", "unknown")}
        return out


def parse_splits(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ExportError(f"--splits: expected comma-separated fractions such as 0.8,0.1,0.1, got {text!r}") from None
    if not 1 <= len(parts) <= 3 or any(p <= 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ExportError(f"--splits: 1 to 3 positive fractions that sum to 1 (train[,validation],test), got {text!r}")
    return parts


def split_names(splits: tuple[float, ...] | None) -> tuple[str, ...]:
    return SPLIT_NAMES[len(splits)] if splits else ("data",)


def id_hash(item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")


# --- splits -----------------------------------------------------------------------------------------

class Splitter:
    """Exact proportional allocation inside each stratum, by rank of the item-id hash (8 bytes per item)."""

    def __init__(self, fractions: tuple[float, ...]):
        self.fractions = fractions
        self.hashes: dict[tuple[str, str], Any] = {}
        self.cuts: dict[tuple[str, str], list[int]] = {}

    def add(self, stratum: tuple[str, str], item_id: str) -> None:
        self.hashes.setdefault(stratum, array("Q")).append(id_hash(item_id))

    def freeze(self) -> None:
        for stratum, hs in self.hashes.items():
            self.hashes[stratum] = np.sort(np.frombuffer(hs, dtype=np.uint64))
            n, cum = len(hs), np.cumsum(self.fractions)
            self.cuts[stratum] = [int(round(n * c)) for c in cum[:-1]] + [n]

    def split_of(self, stratum: tuple[str, str], item_id: str) -> int:
        rank = int(np.searchsorted(self.hashes[stratum], np.uint64(id_hash(item_id)), side="left"))
        return next(k for k, cut in enumerate(self.cuts[stratum]) if rank < cut)


# --- the folder -------------------------------------------------------------------------------------

def prepare_folder(out: Path, *, force: bool) -> Path:
    """OUT is a directory the export owns: created if missing; refused if it holds anything, unless --force,
    which removes only what a previous export listed in its manifest (never anything outside OUT)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out} exists and is not empty: choose a new folder, or pass --force to replace "
                              "a previous export there")
        root = out.resolve()
        manifest = out / MANIFEST
        if manifest.is_file() and not manifest.is_symlink():  # a linked manifest is not ours to trust
            try:
                listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ExportError(f"{manifest}: not a manifest an export wrote ({type(exc).__name__}); empty the "
                                  "folder by hand or choose a new one") from None
            if not isinstance(listed, list):
                raise ExportError(f"{manifest}: 'files' is not a list of names; empty the folder by hand or "
                                  "choose a new one")
            for name in listed:
                if not isinstance(name, str) or not name or "\x00" in name:
                    continue
                target = out / name
                if not target.resolve().is_relative_to(root) or target.resolve() == root:
                    continue
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


# --- the stage --------------------------------------------------------------------------------------

def review_scan(conn: Connection, *, project_id: int, rubric_body: dict[str, Any]) -> kept.Update:
    """The project's kept review scan (analytics/kept.py) brought up to date in the export's own snapshot: the
    card reads the stored counts and only what arrived since, instead of every review. Nothing is written here
    (the snapshot is a read); `store_review_scan` persists it once the snapshot is closed."""
    return kept.bring_up_to_date(conn, project_id=project_id, rubric_body=rubric_body)


def store_review_scan(engine: Engine, *, project_id: int, update: kept.Update) -> None:
    """Persist the scan the card used, if it moved, so that the next export (another format) starts from it. It
    is a cache of what the reviews add up to, so a database that refuses the write (read-only, or busy past its
    timeout) is exported all the same; the next card then adds up the reviews in memory again."""
    if not update.worth_saving:
        return
    try:
        kept.save(engine, project_id=project_id, update=update)
    except SQLAlchemyError:
        return


def _check(opts: ExportOptions, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if opts.consensus not in (None, "consensus", "adjudication"):
        raise ExportError(f"--consensus: expected consensus or adjudication, got {opts.consensus!r}")
    if opts.splits and fmt in ANNOTATION_FORMATS:
        raise ExportError(f"--splits: not for {fmt} (an annotation tool's dataset is one set of records)")


def parse_formats(text: str) -> tuple[str, ...]:
    """`--format`: one format, or several separated by commas (`jsonl,parquet,hf`), each named once."""
    names = tuple(part.strip() for part in text.split(","))
    for name in names:
        if name not in FORMATS:
            raise ExportError(f"--format: expected one of {', '.join(FORMATS)} (or several, comma-separated), "
                              f"got {name!r}" if name else f"--format: an empty name in {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ExportError(f"--format: {', '.join(repeated)} named more than once in {text!r}")
    return names


def run_export(engine: Engine, *, project: str, out: Path, opts: ExportOptions,
               licenses: dict[str, str] | None = None, card: bool = True) -> ExportSummary:
    """One format (`opts.fmt`) into OUT."""
    _check(opts, opts.fmt)
    started = time.perf_counter()
    folder = prepare_folder(out, force=opts.force)
    return _export(engine, project=project, targets=[(opts.fmt, folder)], opts=opts, licenses=licenses or {},
                   card=card, started=started)[0]


def run_exports(engine: Engine, *, project: str, out: Path, formats: tuple[str, ...], opts: ExportOptions,
                licenses: dict[str, str] | None = None, card: bool = True) -> list[ExportSummary]:
    """Several formats from one read of the database: OUT/<format>/ for each, every one a complete export
    folder (its files, its card, its manifest) with the same files a single-format export of that format
    writes. Formats whose rows have the same shape share one pass over the items (jsonl, parquet, hf and sft
    do; dpo and prm carry every version; the annotation tools also the reviews' notes); the card's numbers
    are computed once. OUT's own manifest lists the format folders, so that `--force` replaces them."""
    if len(formats) == 1:
        return [run_export(engine, project=project, out=out, opts=replace(opts, fmt=formats[0]),
                           licenses=licenses, card=card)]
    for fmt in formats:
        _check(opts, fmt)
    started = time.perf_counter()
    top = prepare_folder(out, force=opts.force)
    targets = []
    for fmt in formats:
        folder = safe_path(top, fmt)
        try:
            folder.mkdir()
        except FileExistsError:
            raise ExportError(f"{folder} exists and is not a previous export's: move it, or choose a new "
                              "folder") from None
        targets.append((fmt, folder))
    summaries = _export(engine, project=project, targets=targets, opts=opts, licenses=licenses or {}, card=card,
                        started=started)
    safe_path(top, MANIFEST).write_text(json.dumps({"files": sorted(formats)}, indent=1) + "\n", encoding="utf-8")
    return summaries


def _shape(fmt: str, opts: ExportOptions) -> tuple[bool, bool]:
    """What a format's rows carry beyond the accepted version: the reviews' notes (annotation tools), every
    version (history)."""
    return fmt in ANNOTATION_FORMATS, opts.with_history or fmt in HISTORY_FORMATS


def _export(engine: Engine, *, project: str, targets: list[tuple[str, Path]], opts: ExportOptions,
            licenses: dict[str, str], card: bool, started: float) -> list[ExportSummary]:
    """Write each (format, folder) target; the folders are prepared. Targets with the same row shape are
    fed from one pass over the items."""
    filters = {"min_score": opts.min_score, "consensus": opts.consensus, "source": opts.source,
               "splits": list(opts.splits or [])}
    summaries = {fmt: ExportSummary(fmt=fmt, filters=dict(filters)) for fmt, _ in targets}
    names = split_names(opts.splits)
    scan: kept.Update | None = None
    groups: dict[tuple[bool, bool], list[tuple[str, Path]]] = {}
    for fmt, folder in targets:
        groups.setdefault(_shape(fmt, opts), []).append((fmt, folder))
    with store_db.read_snapshot(engine) as conn:
        proj = store_projects.require_project(conn, name=project)
        rubric_body = store_projects.latest_rubric(conn, project_id=proj["id"])
        dims, _ = rubric_dimensions(rubric_body)
        # a full scan of many reviews for the card: added up by a child process, on the other core, while the
        # rows are written here (kept_child: the same numbers, or None and they are added up here after all)
        pending = kept_child.start(engine, project_id=proj["id"], rubric_body=rubric_body) if card and \
            kept_child.worth_a_child(conn, project_id=proj["id"], rubric_body=rubric_body) else None
        try:
            splitter = None
            for (_, history), group in groups.items():
                reader = Reader(conn, proj, dims, replace(opts, fmt=group[0][0]), licenses)
                if opts.splits and splitter is None:
                    splitter = Splitter(opts.splits)
                    for light in reader.rows(light=True):
                        splitter.add(light["stratum"], light["id"])
                    splitter.freeze()
                _write_pass(reader, group, summaries, names=names, splitter=splitter, dims=dims, opts=opts,
                            rubric_body=rubric_body, project=proj["name"], history=history)
            for summary in summaries.values():
                summary.rows = {name: summary.rows.get(name, 0) for name in names}
                summary.records = {name: summary.records.get(name, 0) for name in names}
            if card:
                beside = None if pending is None else pending.finish(conn, project_id=proj["id"],
                                                                     rubric_body=rubric_body)
                scan = review_scan(conn, project_id=proj["id"], rubric_body=rubric_body) if beside is None \
                    else beside.update
                numbers = card_numbers(conn, project=proj, rubric_body=rubric_body, scan=scan.scan,
                                       agreement=None if beside is None else beside.report)
                for fmt, folder in targets:
                    summary = summaries[fmt]
                    write_card(conn, project=proj, rubric_body=rubric_body, out=folder, summary=summary,
                               licenses=licenses, numbers=numbers)
                    summary.files.append("README.md")
        finally:
            if pending is not None:
                pending.close()
    if scan is not None:
        store_review_scan(engine, project_id=proj["id"], update=scan)
    seconds = time.perf_counter() - started
    for fmt, folder in targets:
        summary = summaries[fmt]
        safe_path(folder, MANIFEST).write_text(json.dumps({"files": sorted(summary.files)}, indent=1) + "\n",
                                               encoding="utf-8")
        summary.seconds = seconds
    return [summaries[fmt] for fmt, _ in targets]


def _write_pass(reader: Reader, group: list[tuple[str, Path]], summaries: dict[str, ExportSummary], *,
                names: tuple[str, ...], splitter: Splitter | None, dims: list[str], opts: ExportOptions,
                rubric_body: dict[str, Any], project: str, history: bool) -> None:
    """One pass over the items, each row written by the sink of every (format, folder) in `group` (formats
    whose rows have the same shape); the first format's summary counts the rows, the others get a copy."""
    with tempfile.TemporaryDirectory(prefix="clinreason-export-") as tmp:
        sinks = []
        for k, (fmt, folder) in enumerate(group):
            scratch = Path(tmp) / str(k)
            scratch.mkdir()
            summary = summaries[fmt]
            sinks.append((open_sink(fmt, folder, scratch, names, dims, replace(opts, fmt=fmt),
                                    step_labels=summary.step_labels, rubric_body=rubric_body, project=project),
                          summary))
        counted = sinks[0][1]
        fed = _share_arrow(sinks)  # hf fed parquet's tables: written no rows, closed after parquet
        writing = [(sink, summary) for sink, summary in sinks if sink not in fed]
        split = names[0]
        for row in reader.rows(all_texts=history):
            if splitter:
                stratum = (row["specialty"] or "", row["source"] or "")
                split = names[splitter.split_of(stratum, row["id"])]
            _count(counted, row, split)
            for sink, summary in writing:
                written = sink.write(split, row)
                records = summary.records
                records[split] = records.get(split, 0) + written
                if summary.fmt == "dpo":
                    summary.pairs += written
        for sink, summary in writing + [(sink, summary) for sink, summary in sinks if sink in fed]:
            summary.files = sink.close()
            if sink in fed:
                summary.records = dict(fed[sink].records)
            if summary is not counted:
                _copy_counts(counted, summary)


def _share_arrow(sinks: list[tuple[Any, ExportSummary]]) -> dict[Any, ExportSummary]:
    """Where one pass writes both parquet and hf, the parquet sink converts each row group to Arrow for both
    (the conversion is most of either's cost). Returns the fed hf sink -> the parquet summary whose record
    counts it shares."""
    parquet = next(((sink, summary) for sink, summary in sinks if type(sink) is ParquetSink), None)
    hf = next((sink for sink, _ in sinks if type(sink) is HFSink), None)
    if parquet is None or hf is None or not parquet[0].feed(hf):
        return {}
    return {hf: parquet[1]}


def _copy_counts(source: ExportSummary, target: ExportSummary) -> None:
    """What `_count` tallied for one sink of a pass, for another sink fed the same rows."""
    target.rows = dict(source.rows)
    target.by_source = Counter(source.by_source)
    target.licenses = {k: Counter(v) for k, v in source.licenses.items()}
    target.languages = Counter(source.languages)
    target.specialties = Counter(source.specialties)
    target.consensus = Counter(source.consensus)


_UNKNOWN_SOURCE: tuple[dict[str, Any], ...] = ({"source": "(unknown)", "license": None},)


def _count(summary: ExportSummary, row: dict[str, Any], split: str) -> None:
    summary.rows[split] = summary.rows.get(split, 0) + 1
    by_source, licenses = summary.by_source, summary.licenses
    for s in row["sources"] or _UNKNOWN_SOURCE:
        source = s["source"]
        by_source[source] += 1
        counts = licenses.get(source)
        if counts is None:  # (not setdefault: that builds a Counter per row)
            counts = licenses[source] = Counter()
        counts[s["license"] or "unspecified"] += 1
    summary.languages[row["language"]] += 1
    summary.specialties[row["specialty"] or "(none)"] += 1
    summary.consensus[row["consensus"]] += 1
