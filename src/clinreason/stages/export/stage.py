"""The export stage: accepted items -> a dataset folder (jsonl | parquet | hf | sft | dpo | prm) with its card.

One row per accepted item: question, options, gold answer, the accepted rationale (steps + text) and final
answer, per-dimension scores (mean, and per reviewer under anonymised ids), consensus type, rounds,
provenance (model, prompt hash, parameters), source and licence, and optionally the version history
(every version with its reviews and their step marks). dpo and prm read that history: a pair per rejected
version, a step-labelled record per reviewed version.

It streams: items are read in one ordered pass (a server-side cursor on PostgreSQL), their versions,
reviews and sources fetched per chunk of ids, and written as they come (Parquet in row groups), so memory
stays flat at any size. Output is deterministic: rows sorted by item id, fixed key order, no clock
readings, splits chosen by a hash of the item id within each stratum (specialty × source) — running it
twice on the same database gives byte-identical files.
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
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, cast

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clinreason.analytics import kept
from clinreason.analytics.scan import pseudonym, rubric_dimensions
from clinreason.analytics.stats import accepted_as
from clinreason.domain.steps import StepMark
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
from clinreason.store import accounts, exports
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


# --- reading ----------------------------------------------------------------------------------------

def _item_stream(conn: Connection, project_id: int, opts: ExportOptions, light: bool) -> Iterator[Any]:
    kinds = [opts.consensus] if opts.consensus else ["consensus", "adjudication"]
    return exports.accepted_items(conn, project_id=project_id, kinds=kinds, source=opts.source, light=light,
                                  chunk_size=opts.chunk_size)


def _chunks(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(rows, size)):
        yield chunk


class _Memo(dict):
    """Decoded JSON text -> value, for the short values an export meets again and again (scores, step marks,
    final answers, parameters, comments); bounded, so memory stays flat at any size. Values handed out are
    shared between rows: nothing downstream modifies a row."""

    LIMIT = 5_000
    LONGEST = 400

    def __init__(self, decode: Any):
        super().__init__()
        self.decode = decode

    def __missing__(self, key: Any) -> Any:
        value = self.decode(key)
        if key is None or (type(key) is str and len(key) <= self.LONGEST):
            if len(self) >= self.LIMIT:
                self.clear()
            self[key] = value
        return value


class _Reader:
    """Builds export rows chunk by chunk; everything it holds is per chunk, plus the reviewer id map and a
    bounded memo of decoded values."""

    def __init__(self, conn: Connection, project: dict[str, Any], dims: list[str], opts: ExportOptions,
                 licenses: dict[str, str]):
        from clinreason.analytics.scan import project_salt

        self.conn, self.project, self.dims, self.opts, self.licenses = conn, project, dims, opts, licenses
        self.salt = project_salt(conn, project["id"])
        self.reviewers = {u.id: pseudonym(self.salt, u.username) for u in accounts.list_users(conn)}
        self.text = exports.json_text(conn)  # JSON columns arrive as text, to decode here
        load = exports.load_json if self.text else _same
        self.loads: dict[Any, Any] = _Memo(load) if self.text else _Passthrough()
        self.marks: dict[Any, Any] = _Memo(lambda raw: _marks_of(None if raw is None else load(raw)))
        self.scores: dict[Any, Any] = _Memo(self._scores)
        self.params: dict[Any, Any] = _Memo(
            lambda raw: json.dumps(load(raw) or {}, sort_keys=True, ensure_ascii=False))
        self.authors: dict[Any, Any] = _Memo(self._author)
        self.annotation = opts.fmt in ANNOTATION_FORMATS
        self.accepted_as: dict[Any, Any] = _Accepted()
        # a review's (scores, values) and step marks by their stored JSON: memoised where that is text
        self.scores_of: Any = self.scores if self.text else _Calls(self._scores)
        self.marks_of: Any = self.marks if self.text else _Calls(_marks_of)

    def _author(self, author: str | None) -> str | None:
        if author and author.startswith("user:"):
            return pseudonym(self.salt, author[5:])
        return author

    def author(self, author: str | None) -> str | None:
        return self.authors[author]

    def _scores(self, raw: Any) -> tuple[dict[str, int | None], tuple[int, ...] | None]:
        """A review's scores by rubric dimension (None where not an integer), and their values when every
        dimension has one (None otherwise)."""
        scores = (exports.load_json(raw) if self.text and raw is not None else raw) or {}
        values = tuple(_int_or_none(scores.get(d)) for d in self.dims)
        return dict(zip(self.dims, values)), (None if None in values else cast(tuple[int, ...], values))

    def rows(self, *, light: bool = False, all_texts: bool = False) -> Iterator[dict[str, Any]]:
        for chunk in _chunks(_item_stream(self.conn, self.project["id"], self.opts, light), self.opts.chunk_size):
            yield from self._build(chunk, light=light, all_texts=all_texts)

    def _build(self, chunk: list[Any], *, light: bool, all_texts: bool) -> Iterator[dict[str, Any]]:
        ids = [r[0] for r in chunk]
        sources: dict[str, list[dict[str, Any]]] = {}
        licenses = self.licenses
        for item_id, source, subject, license in exports.sources_of(self.conn, item_ids=ids):
            entry = {"source": source, "subject": subject, "license": license or licenses.get(source)}
            if item_id in sources:
                sources[item_id].append(entry)
            else:
                sources[item_id] = [entry]
        need_scores = not light or self.opts.min_score is not None
        versions: dict[str, list[tuple[Any, ...]]] = {}
        by_rationale: dict[str, list[tuple[Any, ...]]] = {}
        if need_scores:
            for v in exports.versions_of(self.conn, item_ids=ids, texts=not light):
                if v[1] in versions:
                    versions[v[1]].append(v)
                else:
                    versions[v[1]] = [v]
            rids = [v[0] for vs in versions.values() for v in vs]
            for start in range(0, len(rids), 2000):
                for r in exports.review_scores(self.conn, rationale_ids=rids[start:start + 2000],
                                               notes=self.annotation):
                    if r[0] in by_rationale:
                        by_rationale[r[0]].append(r)
                    else:
                        by_rationale[r[0]] = [r]
        min_score, n_dims = self.opts.min_score, len(self.dims)
        no_sources: list[dict[str, Any]] = []
        for item in chunk:
            srcs = sources.get(item[0], no_sources)
            accepted_reviews, complete = self._reviews(by_rationale.get(item[3], ()))
            mean = self._means(accepted_reviews, complete)
            if min_score is not None:
                scored = [m for m in mean.values() if m is not None]
                if len(scored) < n_dims or min(scored) < min_score:
                    continue
            if light:
                yield {"id": item[0], "stratum": (item[1] or "", srcs[0]["source"] if srcs else "")}
                continue
            yield self._row(item, srcs, versions.get(item[0], []), by_rationale, all_texts, accepted_reviews, mean)

    def _reviews(self, rows: Any) -> tuple[list[dict[str, Any]], list[tuple[int, ...] | None]]:
        """The reviews as rows carry them, and each one's score values (None unless every dimension has one)."""
        out: list[dict[str, Any]] = []
        complete: list[tuple[int, ...] | None] = []
        reviewers, annotation = self.reviewers, self.annotation
        scores_of, marks_of = self.scores_of, self.marks_of
        for r in rows:
            # rationale_id reviewer_id verdict scores id steps comments seconds_spent edited_text
            try:
                marks = marks_of[r[5]]
            except _BadMarks as exc:
                raise ExportError(f"review {r[4]}: {exc}") from None
            scores, values = scores_of[r[3]]
            review = {"reviewer": reviewers.get(r[1]) or f"R-{r[1]}", "verdict": r[2], "scores": scores,
                      "steps": marks}
            complete.append(values)
            if annotation:  # what an annotation tool holds besides the scores
                comments = self.loads[r[6]] if r[6] is not None else None
                review.update(comments={str(k): str(v) for k, v in (comments or {}).items() if v},
                              seconds=r[7], edited_text=r[8])
            out.append(review)
        return out, complete

    def _means(self, revs: list[dict[str, Any]], complete: list[tuple[int, ...] | None]) -> dict[str, float | None]:
        if complete and None not in complete:  # every review scored every dimension
            n = len(complete)
            return dict(zip(self.dims, [total / n for total in map(sum, zip(*complete))]))
        mean: dict[str, float | None] = {}
        for d in self.dims:
            vals = [r["scores"][d] for r in revs if r["scores"][d] is not None]
            mean[d] = sum(vals) / len(vals) if vals else None
        return mean

    def _row(self, item, srcs, versions, by_rationale, all_texts, accepted_reviews, mean) -> dict[str, Any]:
        item_id, specialty, kind, rationale_id, question, context, options, answer, answer_text, language = item
        acc = None
        for v in versions:
            if v[0] == rationale_id:
                acc = v
                break
        if acc is None:
            raise ExportError(f"item {item_id}: its decision names rationale {rationale_id}, which is not one "
                              "of its versions (run `clinreason history` on it)")
        loads = self.loads
        rounds = 0
        for v in versions:
            if v[0] in by_rationale:
                rounds += 1
        if self.text:  # options rarely repeat: decoded, not memoised; answer labels are short and do
            options, answer = _load_json(options), loads[answer]
        # id item_id version origin author model prompt_hash params seed parent_version steps final_answer text
        params = acc[7]
        row: dict[str, Any] = {
            "id": item_id,
            "question": question,
            "context": context,
            "options": [{"label": str(label), "text": str(t)} for label, t in options],
            "answer": [str(x) for x in answer],
            "answer_text": answer_text,
            "language": language,
            "specialty": specialty,
            "rationale": {"steps": [str(s) for s in (_load_json(acc[10]) if self.text else acc[10])],
                          "text": acc[12]},
            "final_answer": [str(x) for x in loads[acc[11]]],
            "scores": {"mean": mean, "reviews": accepted_reviews},
            "consensus": kind,
            "accepted_as": self.accepted_as[kind, acc[3]],
            "rounds": rounds,
            "accepted_version": acc[2],
            "provenance": {"origin": acc[3], "author": self.authors[acc[4]], "model": acc[5],
                           "prompt_hash": acc[6],
                           "params": self.params[params] if self.text else _params_text(params),
                           "seed": acc[8]},
            "source": srcs[0]["source"] if srcs else None,
            "license": srcs[0]["license"] if srcs else None,
            "sources": srcs,
        }
        if self.opts.with_history or self.opts.fmt in HISTORY_FORMATS:
            history = []
            for v in versions:
                steps, final = (exports.load_json(v[10]) if self.text else v[10]), loads[v[11]]
                history.append({
                    "version": v[2], "origin": v[3], "author": self.authors[v[4]], "model": v[5],
                    "prompt_hash": v[6], "text": v[12] if all_texts else None,
                    "steps": [str(s) for s in steps] if all_texts else None,
                    "final_answer": [str(x) for x in final] if all_texts else None,
                    "accepted": v[0] == acc[0], "reviews": self._reviews(by_rationale.get(v[0], ()))[0],
                })
            row["history"] = history
            if self.annotation:  # the lineage an annotation tool's metadata carries
                for h, v in zip(history, versions):
                    h.update(parent_version=v[9], params=dict(loads[v[7]] or {}), seed=v[8])
        return row


class _Accepted(dict):
    """(decision kind, origin) -> how the item was accepted (analytics.stats.accepted_as): a handful of pairs."""

    def __missing__(self, key: tuple[str, str]) -> str:
        value = self[key] = accepted_as(*key)
        return value


class _Calls:
    """`f` looked up like a memo (`calls[x]` is `f(x)`), where values are not memoised (PostgreSQL)."""

    def __init__(self, f: Any):
        self.f = f

    def __getitem__(self, key: Any) -> Any:
        return self.f(key)


_load_json = exports.load_json


class _Passthrough(dict):
    """What `_Memo` is where the driver already decoded JSON (PostgreSQL): the value itself."""

    def __missing__(self, key: Any) -> Any:
        return key

    def __getitem__(self, key: Any) -> Any:
        return key


def _same(value: Any) -> Any:
    return value


def _params_text(params: Any) -> str:
    return json.dumps(params or {}, sort_keys=True, ensure_ascii=False)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _BadMarks(ValueError):
    """A review's stored step marks are not a list of marks (the message says what they are)."""


def _marks_of(stored: Any) -> list[dict[str, Any]]:
    """A review's stored step marks in their canonical form (StepMark.to_dict), by step."""
    stored = stored or []
    if not isinstance(stored, list):
        raise _BadMarks(f"its steps column holds {type(stored).__name__}, not a list of marks")
    try:
        marks = [StepMark.from_dict(m) for m in stored]
    except (KeyError, TypeError, ValueError) as exc:
        raise _BadMarks(f"a stored step mark is malformed ({type(exc).__name__}: {exc}); "
                        "expected {\"step\": N, \"verdict\": \"ok\"|\"error\", ...}") from None
    return [m.to_dict() for m in sorted(marks, key=lambda m: m.step)]


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
    if not update.changed:
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
        splitter = None
        for (_, history), group in groups.items():
            reader = _Reader(conn, proj, dims, replace(opts, fmt=group[0][0]), licenses)
            if opts.splits and splitter is None:
                splitter = Splitter(opts.splits)
                for light in reader.rows(light=True):
                    splitter.add(light["stratum"], light["id"])
                splitter.freeze()
            with tempfile.TemporaryDirectory(prefix="clinreason-export-") as tmp:
                sinks = []
                for k, (fmt, folder) in enumerate(group):
                    scratch = Path(tmp) / str(k)
                    scratch.mkdir()
                    summary = summaries[fmt]
                    sinks.append((open_sink(fmt, folder, scratch, names, dims, replace(opts, fmt=fmt),
                                            step_labels=summary.step_labels, rubric_body=rubric_body,
                                            project=proj["name"]), summary))
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
        for summary in summaries.values():
            summary.rows = {name: summary.rows.get(name, 0) for name in names}
            summary.records = {name: summary.records.get(name, 0) for name in names}
        if card:
            scan = review_scan(conn, project_id=proj["id"], rubric_body=rubric_body)
            numbers = card_numbers(conn, project=proj, rubric_body=rubric_body, scan=scan.scan)
            for fmt, folder in targets:
                summary = summaries[fmt]
                summary.seconds = time.perf_counter() - started
                write_card(conn, project=proj, rubric_body=rubric_body, out=folder, summary=summary,
                           licenses=licenses, numbers=numbers)
                summary.files.append("README.md")
    if scan is not None:
        store_review_scan(engine, project_id=proj["id"], update=scan)
    seconds = time.perf_counter() - started
    for fmt, folder in targets:
        summary = summaries[fmt]
        safe_path(folder, MANIFEST).write_text(json.dumps({"files": sorted(summary.files)}, indent=1) + "\n",
                                               encoding="utf-8")
        summary.seconds = seconds
    return [summaries[fmt] for fmt, _ in targets]


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
