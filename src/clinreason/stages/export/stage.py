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
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from sqlalchemy import Connection, Engine

from clinreason.analytics.scan import pseudonym, rubric_dimensions
from clinreason.analytics.stats import accepted_as
from clinreason.domain.steps import StepMark
from clinreason.stages.export.card import write_card
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
from clinreason.stages.export.formats import open_sink
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


class _Reader:
    """Builds export rows chunk by chunk; everything it holds is per chunk, plus the reviewer id map."""

    def __init__(self, conn: Connection, project: dict[str, Any], dims: list[str], opts: ExportOptions,
                 licenses: dict[str, str]):
        from clinreason.analytics.scan import project_salt

        self.conn, self.project, self.dims, self.opts, self.licenses = conn, project, dims, opts, licenses
        self.salt = project_salt(conn, project["id"])
        self.reviewers = {u.id: pseudonym(self.salt, u.username) for u in accounts.list_users(conn)}

    def author(self, author: str | None) -> str | None:
        if author and author.startswith("user:"):
            return pseudonym(self.salt, author[5:])
        return author

    def rows(self, *, light: bool = False, all_texts: bool = False) -> Iterator[dict[str, Any]]:
        for chunk in _chunks(_item_stream(self.conn, self.project["id"], self.opts, light), self.opts.chunk_size):
            yield from self._build(chunk, light=light, all_texts=all_texts)

    def _build(self, chunk: list[Any], *, light: bool, all_texts: bool) -> Iterator[dict[str, Any]]:
        ids = [r.id for r in chunk]
        sources: dict[str, list[dict[str, Any]]] = {}
        for r in exports.sources_of(self.conn, item_ids=ids):
            sources.setdefault(r.item_id, []).append(
                {"source": r.source, "subject": r.subject, "license": r.license or self.licenses.get(r.source)})
        need_scores = not light or self.opts.min_score is not None
        versions: dict[str, list[Any]] = {}
        by_rationale: dict[str, list[Any]] = {}
        if need_scores:
            for r in exports.version_provenance(self.conn, item_ids=ids):
                versions.setdefault(r.item_id, []).append(r)
            rids = [v.id for vs in versions.values() for v in vs]
            for start in range(0, len(rids), 2000):
                for r in exports.review_scores(self.conn, rationale_ids=rids[start:start + 2000]):
                    by_rationale.setdefault(r.rationale_id, []).append(r)
        texts: dict[str, Any] = {}
        if not light:
            wanted = ([v.id for vs in versions.values() for v in vs] if all_texts else [r.rationale_id for r in chunk])
            for r in exports.version_texts(self.conn, rationale_ids=wanted):
                texts[r.id] = r
        for item in chunk:
            srcs = sources.get(item.id, [])
            accepted_reviews = self._reviews(by_rationale.get(item.rationale_id, []))
            mean = self._means(accepted_reviews)
            if self.opts.min_score is not None:
                scored = [m for m in mean.values() if m is not None]
                if len(scored) < len(self.dims) or min(scored) < self.opts.min_score:
                    continue
            if light:
                yield {"id": item.id, "stratum": (item.specialty or "", srcs[0]["source"] if srcs else "")}
                continue
            yield self._row(item, srcs, versions.get(item.id, []), by_rationale, texts, accepted_reviews, mean)

    def _reviews(self, rows: list[Any]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            scores = r.scores or {}
            review = {"reviewer": self.reviewers.get(r.reviewer_id, f"R-{r.reviewer_id}"), "verdict": r.verdict,
                      "scores": {d: _int_or_none(scores.get(d)) for d in self.dims},
                      "steps": _marks(r)}
            if self.opts.fmt in ANNOTATION_FORMATS:  # what an annotation tool holds besides the scores
                review.update(comments={str(k): str(v) for k, v in (r.comments or {}).items() if v},
                              seconds=r.seconds_spent, edited_text=r.edited_text)
            out.append(review)
        return out

    def _means(self, revs: list[dict[str, Any]]) -> dict[str, float | None]:
        mean: dict[str, float | None] = {}
        for d in self.dims:
            vals = [r["scores"][d] for r in revs if r["scores"][d] is not None]
            mean[d] = sum(vals) / len(vals) if vals else None
        return mean

    def _row(self, item, srcs, versions, by_rationale, texts, accepted_reviews, mean) -> dict[str, Any]:
        acc = next((v for v in versions if v.id == item.rationale_id), None)
        if acc is None:
            raise ExportError(f"item {item.id}: its decision names rationale {item.rationale_id}, which is not one "
                              "of its versions (run `clinreason history` on it)")
        text = texts[acc.id]
        rounds = sum(1 for v in versions if by_rationale.get(v.id))
        row: dict[str, Any] = {
            "id": item.id,
            "question": item.question,
            "context": item.context,
            "options": [{"label": str(label), "text": str(t)} for label, t in item.options],
            "answer": [str(x) for x in item.answer_labels],
            "answer_text": item.answer_text,
            "language": item.language,
            "specialty": item.specialty,
            "rationale": {"steps": [str(s) for s in text.steps], "text": text.text},
            "final_answer": [str(x) for x in text.final_answer],
            "scores": {"mean": mean, "reviews": accepted_reviews},
            "consensus": item.kind,
            "accepted_as": accepted_as(item.kind, acc.origin),
            "rounds": rounds,
            "accepted_version": acc.version,
            "provenance": {"origin": acc.origin, "author": self.author(acc.author), "model": acc.model,
                           "prompt_hash": acc.prompt_hash,
                           "params": json.dumps(acc.params or {}, sort_keys=True, ensure_ascii=False),
                           "seed": acc.seed},
            "source": srcs[0]["source"] if srcs else None,
            "license": srcs[0]["license"] if srcs else None,
            "sources": srcs,
        }
        if self.opts.with_history or self.opts.fmt in HISTORY_FORMATS:
            row["history"] = [{
                "version": v.version, "origin": v.origin, "author": self.author(v.author), "model": v.model,
                "prompt_hash": v.prompt_hash, "text": texts[v.id].text if v.id in texts else None,
                "steps": [str(s) for s in texts[v.id].steps] if v.id in texts else None,
                "final_answer": [str(x) for x in texts[v.id].final_answer] if v.id in texts else None,
                "accepted": v.id == acc.id, "reviews": self._reviews(by_rationale.get(v.id, [])),
            } for v in versions]
            if self.opts.fmt in ANNOTATION_FORMATS:  # the lineage an annotation tool's metadata carries
                for h, v in zip(row["history"], versions):
                    h.update(parent_version=v.parent_version, params=dict(v.params or {}), seed=v.seed)
        return row


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _marks(review: Any) -> list[dict[str, Any]]:
    """A review's stored step marks in their canonical form (StepMark.to_dict), by step."""
    stored = review.steps or []
    if not isinstance(stored, list):
        raise ExportError(f"review {review.id}: its steps column holds {type(stored).__name__}, not a list of marks")
    try:
        marks = [StepMark.from_dict(m) for m in stored]
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"review {review.id}: a stored step mark is malformed ({type(exc).__name__}: {exc}); "
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

@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent read-only view for the whole export that never blocks writers: on PostgreSQL a
    REPEATABLE READ read-only transaction; on SQLite (WAL) a deferred transaction on a connection of its
    own (the application engine begins every transaction IMMEDIATE, which would hold the write lock)."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        return
    reader = store_db.snapshot_engine(engine)
    try:
        with reader.connect() as conn:
            yield conn
    finally:
        reader.dispose()


def run_export(engine: Engine, *, project: str, out: Path, opts: ExportOptions,
               licenses: dict[str, str] | None = None, card: bool = True) -> ExportSummary:
    if opts.fmt not in FORMATS:
        raise ExportError(f"--format: expected one of {', '.join(FORMATS)}, got {opts.fmt!r}")
    if opts.consensus not in (None, "consensus", "adjudication"):
        raise ExportError(f"--consensus: expected consensus or adjudication, got {opts.consensus!r}")
    if opts.splits and opts.fmt in ANNOTATION_FORMATS:
        raise ExportError(f"--splits: not for {opts.fmt} (an annotation tool's dataset is one set of records)")
    started = time.perf_counter()
    out = prepare_folder(out, force=opts.force)
    summary = ExportSummary(fmt=opts.fmt, filters={"min_score": opts.min_score, "consensus": opts.consensus,
                                                   "source": opts.source, "splits": list(opts.splits or [])})
    names = split_names(opts.splits)
    with read_snapshot(engine) as conn:
        proj = store_projects.require_project(conn, name=project)
        rubric_body = store_projects.latest_rubric(conn, project_id=proj["id"])
        dims, _ = rubric_dimensions(rubric_body)
        reader = _Reader(conn, proj, dims, opts, licenses or {})
        splitter = None
        if opts.splits:
            splitter = Splitter(opts.splits)
            for light in reader.rows(light=True):
                splitter.add(light["stratum"], light["id"])
            splitter.freeze()
        with tempfile.TemporaryDirectory(prefix="clinreason-export-") as tmp:
            sink = open_sink(opts.fmt, out, Path(tmp), names, dims, opts, step_labels=summary.step_labels,
                             rubric_body=rubric_body, project=proj["name"])
            for row in reader.rows(all_texts=opts.with_history or opts.fmt in HISTORY_FORMATS):
                stratum = (row["specialty"] or "", row["source"] or "")
                split = names[splitter.split_of(stratum, row["id"])] if splitter else names[0]
                _count(summary, row, split)
                written = sink.write(split, row)
                summary.records[split] = summary.records.get(split, 0) + written
                summary.pairs += written if opts.fmt == "dpo" else 0
            summary.files = sink.close()
        summary.rows = {name: summary.rows.get(name, 0) for name in names}
        summary.records = {name: summary.records.get(name, 0) for name in names}
        if card:
            summary.seconds = time.perf_counter() - started
            write_card(conn, project=proj, rubric_body=rubric_body, out=out, summary=summary,
                       licenses=licenses or {})
            summary.files.append("README.md")
    safe_path(out, MANIFEST).write_text(json.dumps({"files": sorted(summary.files)}, indent=1) + "\n",
                                        encoding="utf-8")
    summary.seconds = time.perf_counter() - started
    return summary


def _count(summary: ExportSummary, row: dict[str, Any], split: str) -> None:
    summary.rows[split] = summary.rows.get(split, 0) + 1
    for s in row["sources"] or [{"source": "(unknown)", "license": None}]:
        summary.by_source[s["source"]] += 1
        summary.licenses.setdefault(s["source"], Counter())[s["license"] or "unspecified"] += 1
    summary.languages[row["language"]] += 1
    summary.specialties[row["specialty"] or "(none)"] += 1
    summary.consensus[row["consensus"]] += 1
