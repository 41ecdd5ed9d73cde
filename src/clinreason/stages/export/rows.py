"""Export rows from the database: the accepted items read in one ordered pass (a server-side cursor on
PostgreSQL), their versions, reviews and sources fetched per chunk of ids, each item built into the row every
format writes (question, options, gold answer, the accepted rationale and final answer, scores per dimension
and per anonymised reviewer, consensus, rounds, provenance, sources, and the version history where a format
asks for it). Everything held is per chunk, plus the reviewer id map and bounded memos of decoded values.
Used by the export stage (`stage.py`)."""

from __future__ import annotations

import json
from itertools import islice
from typing import Any, Iterator, cast

from sqlalchemy import Connection

from clinreason.analytics.scan import pseudonym
from clinreason.analytics.stats import accepted_as
from clinreason.domain.steps import StepMark
from clinreason.stages.export.common import ANNOTATION_FORMATS, HISTORY_FORMATS, ExportError, ExportOptions
from clinreason.store import accounts, exports


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


class Reader:
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
