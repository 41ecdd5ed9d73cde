"""Reading what annotation tools export: questions together with drafted rationales and expert reviews.

    argilla      a folder written by Argilla 2.x `Dataset.to_disk`: `.argilla/settings.json` (fields and
                 questions), `.argilla/dataset.json`, `records.json` (a list of records, each with
                 `fields`, `metadata`, `suggestions` {question: {value, score, agent}} and `responses`
                 {question: [{value, user_id}]})
    labelstudio  a Label Studio JSON export: a list of tasks, each with `data`, `meta`, `annotations`
                 [{completed_by, lead_time, was_cancelled, result: [{from_name, type, value}]}] and
                 `predictions` [{model_version, result: [...]}]

The question comes from the record's fields (Argilla) or data (Label Studio) through `--map`, as for any
mapped layout. The rationale is the field named by `--map rationale=NAME` (default `rationale`) and/or a
suggestion (Argilla) or prediction (Label Studio) for the question of that name: each becomes a drafted
version, the suggestion's agent or the prediction's model_version as its model. Every response (one per
annotator) becomes a review of the record's last version: rating questions score the rubric dimension of
their name, or the one `--map-question NAME=DIMENSION` names; text questions are comments (on the
dimension of their name, `<dimension>_comment`, or `--map-question NAME=DIMENSION`; any other is the
general comment); a label / choices question named `verdict` (or mapped to it) is the verdict — without
one, the verdict is `accept` when the scores pass the rubric, `regenerate` otherwise.

A record written by `clinreason export --format argilla|labelstudio` carries a `clinreason` metadata
entry: the item exactly as stored and the version's lineage (number, parent, origin, author, model,
steps), and the anonymised reviewer behind each annotator id; with it the item and its versions come
back as they were. Nothing here touches the database.

This module holds what both readers share (the records they produce, which question is what, clinreason's
provenance, reading a JSON file); the readers are stages/ingest_argilla.py and stages/ingest_labelstudio.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from clinreason.domain.records import Origin, Verdict
from clinreason.domain.rubric import Rubric
from clinreason.domain.steps import StepMark
from clinreason.stages.ingest_readers import (
    FileFormatError,
    RawRecord,
    RecordError,
    pairs_hook,
)

#: the metadata key (Argilla) / `meta` key (Label Studio) under which clinreason's exports carry provenance
PROVENANCE_KEY = "clinreason"
#: targets of `--map-question` besides the rubric's dimensions
QUESTION_TARGETS = ("verdict", "general", "ignore")
GENERAL = "general"
VERDICTS = tuple(v.value for v in Verdict)
ORIGINS = tuple(o.value for o in Origin)


@dataclass(frozen=True, slots=True)
class ImportedDraft:
    """A rationale version as the tool holds it."""

    text: str
    where: str  # the record's field or suggestion it came from, for messages
    model: str | None = None
    #: "model:<id>" for a model's draft; a person's id (`author_person`) is mapped to an account by the writer
    author: str | None = None
    author_person: str | None = None
    origin: str = Origin.GENERATED.value
    version: int | None = None  # None: the item's next number
    parent_version: int | None = None
    prompt_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    steps: list[str] | None = None  # with final_answer: the stored parse, kept as it was
    final_answer: list[str] | None = None


@dataclass(slots=True)
class ImportedReview:
    """One annotator's response to a record: a review of its last draft."""

    reviewer: str  # the tool's id of the annotator
    name: str  # what the reviewer account is named after (the anonymised id of a clinreason export)
    verdict: str = ""
    scores: dict[str, int] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    marks: list[dict[str, Any]] = field(default_factory=list)
    edited_text: str | None = None
    verdict_derived: bool = False


@dataclass(slots=True)
class Annotations:
    tool: str
    drafts: list[ImportedDraft] = field(default_factory=list)
    reviews: list[ImportedReview] = field(default_factory=list)
    #: the record carried clinreason's provenance: its fields are the item exactly as stored
    exact: bool = False
    ignored: set[str] = field(default_factory=set)  # question names that carry nothing clinreason keeps


# --- which question is what ------------------------------------------------------------------------

def check_question_map(question_map: dict[str, str], rubric: Rubric, file: str) -> None:
    for name, target in question_map.items():
        if target not in rubric.names and target not in QUESTION_TARGETS:
            raise FileFormatError(f"{file}: --map-question {name}={target}: '{target}' is not a rubric dimension "
                                  f"({', '.join(rubric.names)}) nor one of {', '.join(QUESTION_TARGETS)}")


def parse_question_map(pairs: list[str]) -> dict[str, str]:
    """`--map-question NAME=DIMENSION` pairs -> {name: dimension} (checked against the rubric at import)."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, target = (s.strip() for s in pair.partition("="))
        if not sep or not name or not target:
            raise ValueError(f"--map-question {pair!r}: expected NAME=DIMENSION (or NAME=verdict|general|ignore)")
        out[name] = target
    return out


def question_role(name: str, kind: str, *, question_map: dict[str, str], rubric: Rubric, rationale: str,
                  file: str, where: str) -> tuple[str, str | None]:
    """(role, dimension) of a question: ("score", dim), ("comment", dim or "general"), ("verdict", None),
    ("rationale", None) or ("ignored", None). A rating question that names no dimension refuses the file."""
    target = question_map.get(name)
    if target == "ignore":
        return "ignored", None
    if name == rationale and target is None:
        return "rationale", None
    if kind == "rating":
        dim = target if target is not None else (name if name in rubric.names else None)
        if dim is None or dim not in rubric.names:
            raise FileFormatError(f"{file}: {where}: the rating question '{name}' is not a rubric dimension: pass "
                                  f"--map-question {name}=DIMENSION (dimensions: {', '.join(rubric.names)}) or "
                                  f"--map-question {name}=ignore")
        return "score", dim
    if kind == "text":
        if target is not None:
            return ("comment", target) if target in (*rubric.names, GENERAL) else ("ignored", None)
        if name in rubric.names:
            return "comment", name
        if name.endswith("_comment") and name[: -len("_comment")] in rubric.names:
            return "comment", name[: -len("_comment")]
        return "comment", GENERAL
    if kind == "label" and (target == "verdict" or (target is None and name == "verdict")):
        return "verdict", None
    return "ignored", None


class Responses:
    """Collects one record's answers annotator by annotator, then checks them against the rubric."""

    def __init__(self, file: str, rec_number: int, locator: str, rubric: Rubric):
        self.file, self.number, self.locator, self.rubric = file, rec_number, locator, rubric
        self.by_user: dict[str, ImportedReview] = {}
        self.general: dict[str, list[tuple[str, str]]] = {}

    def error(self, where: str, expected: str, got: Any = None) -> RecordError:
        return RecordError(self.file, self.number, where, expected, got, self.locator)

    def review(self, user: str, name: str) -> ImportedReview:
        if user not in self.by_user:
            self.by_user[user] = ImportedReview(reviewer=user, name=name)
        return self.by_user[user]

    def add(self, user: str, name: str, role: str, dim: str | None, value: Any, where: str, question: str) -> None:
        review = self.review(user, name)
        if role == "score":
            assert dim is not None
            if isinstance(value, float) and math.isfinite(value) and value == int(value):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not self.rubric.scale_min <= value <= self.rubric.scale_max:
                raise self.error(where, f"a score {self.rubric.scale_min}-{self.rubric.scale_max} for '{dim}'", value)
            if dim in review.scores:
                raise self.error(where, f"one score for '{dim}' per annotator (two questions map to it)", value)
            review.scores[dim] = value
        elif role == "comment":
            assert dim is not None
            if isinstance(value, list):
                value = "\n".join(str(v) for v in value)
            if value is None or (isinstance(value, str) and not value.strip()):
                return
            if not isinstance(value, str):
                raise self.error(where, "a text answer", value)
            if dim == GENERAL:
                self.general.setdefault(user, []).append((question, value))
            else:
                review.comments[dim] = (review.comments[dim] + "\n\n" + value) if dim in review.comments else value
        elif role == "verdict":
            if isinstance(value, list):
                if len(value) != 1:
                    raise self.error(where, "one verdict", value)
                value = value[0]
            if value not in VERDICTS:
                raise self.error(where, f"a verdict: {', '.join(VERDICTS)}", value)
            review.verdict = value

    def finish(self) -> list[ImportedReview]:
        out = []
        for user, review in self.by_user.items():
            parts = self.general.get(user, [])
            if parts:
                review.comments[GENERAL] = parts[0][1] if len(parts) == 1 else \
                    "\n\n".join(f"{q}: {text}" for q, text in parts)
            if not review.scores and not review.verdict and not review.comments:
                continue
            if not review.verdict:
                passing = set(review.scores) == set(self.rubric.names) and not self.rubric.failing_dimensions(
                    review.scores)
                review.verdict = Verdict.ACCEPT.value if passing else Verdict.REGENERATE.value
                review.verdict_derived = True
            out.append(review)
        return out


# --- clinreason's own provenance ----------------------------------------------------------------------

def provenance(value: Any, error: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise error(PROVENANCE_KEY, "clinreason's provenance as a JSON object", value[:40]) from None
    if not isinstance(value, dict) or not isinstance(value.get("item"), dict):
        raise error(PROVENANCE_KEY, "clinreason's provenance: an object with 'item'", value)
    return value


def exact_fields(prov: dict[str, Any], error: Any) -> dict[str, Any]:
    """The item as stored, under the default field names of a mapped layout."""
    item = prov["item"]
    options = item.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, list) and len(o) == 2 for o in options):
        raise error(f"{PROVENANCE_KEY}.item.options", "a list of [label, text] pairs", options)
    return {"question": item.get("question"), "options": {str(k): v for k, v in options},
            "answer": list(item.get("answer") or []), "answer_text": item.get("answer_text"),
            "context": item.get("context"), "specialty": item.get("specialty"), "language": item.get("language")}


def _int_or_none(value: Any, where: str, error: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(where, "a version number (a positive integer)", value)
    return value


def exact_draft(prov: dict[str, Any], text: Any, where: str, error: Any) -> ImportedDraft:
    version = prov.get("version") or {}
    if not isinstance(version, dict):
        raise error(f"{PROVENANCE_KEY}.version", "an object", version)
    if not isinstance(text, str) or not text.strip():
        raise error(where, "the version's rationale text", text)
    origin = version.get("origin") or Origin.GENERATED.value
    if origin not in ORIGINS:
        raise error(f"{PROVENANCE_KEY}.version.origin", f"one of {', '.join(ORIGINS)}", origin)
    author = version.get("author")
    steps, final = version.get("steps"), version.get("final_answer")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(s, str) for s in steps)):
        raise error(f"{PROVENANCE_KEY}.version.steps", "a list of step texts", steps)
    if final is not None and not (isinstance(final, list) and all(isinstance(s, str) for s in final)):
        raise error(f"{PROVENANCE_KEY}.version.final_answer", "a list of labels", final)
    params = version.get("params") or {}
    # an export names a person by their anonymised id (no prefix); "model:<id>", "import:<tool>" stay as they are
    person = None
    if isinstance(author, str) and author.startswith("user:"):
        person = author[len("user:"):]
    elif isinstance(author, str) and author and ":" not in author:
        person = author
    return ImportedDraft(
        text=text, where=where, model=version.get("model"), origin=origin,
        author=author if isinstance(author, str) and author and person is None else None,
        author_person=person,
        version=_int_or_none(version.get("number"), f"{PROVENANCE_KEY}.version.number", error),
        parent_version=_int_or_none(version.get("parent"), f"{PROVENANCE_KEY}.version.parent", error),
        prompt_hash=version.get("prompt_hash"), params=params if isinstance(params, dict) else {},
        seed=version.get("seed") if isinstance(version.get("seed"), int) else None,
        steps=steps, final_answer=final if steps is not None else None)


def review_extras(prov: dict[str, Any] | None, reviews: list[ImportedReview], error: Any) -> None:
    """Step marks, seconds and edited text of a clinreason export's reviews (held in its provenance)."""
    extra = (prov or {}).get("reviews") or {}
    if not isinstance(extra, dict):
        return
    for review in reviews:
        more = extra.get(review.reviewer)
        if not isinstance(more, dict):
            continue
        if isinstance(more.get("marks"), list):
            try:
                review.marks = [StepMark.from_dict(m).to_dict() for m in more["marks"]]
            except (KeyError, TypeError, ValueError, AttributeError):
                raise error(f"{PROVENANCE_KEY}.reviews.{review.reviewer}.marks",
                            'step marks such as {"step": 2, "verdict": "error", ...}', more["marks"]) from None
        if isinstance(more.get("seconds"), (int, float)) and not isinstance(more.get("seconds"), bool):
            review.seconds = float(more["seconds"])
        if isinstance(more.get("edited_text"), str):
            review.edited_text = more["edited_text"]


def reviewer_names(prov: dict[str, Any] | None) -> dict[str, str]:
    names = (prov or {}).get("reviewers") or {}
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


# --- one record after another --------------------------------------------------------------------------

#: error(where, expected, got) -> the RecordError of the record being read
ErrorOf = Callable[..., RecordError]


def each_record(records: list[Any], *, file: str, kind: str, body: str, locator: Callable[[Any], str | None],
                read: Callable[[dict[str, Any], int, str, ErrorOf], RawRecord]) -> Iterator[RawRecord | RecordError]:
    """Each record of an export read by `read(record, number, locator, error)`, or the RecordError that
    says what is wrong with it (numbered from 1; located by the tool's own id where it has one). A record
    that is not an object with the object `body` (Argilla's fields, Label Studio's data) is an error."""
    for number, record in enumerate(records, 1):
        where = locator(record) if isinstance(record, dict) else None
        place = where or f"record {number}"

        def error(at: str, expected: str, got: Any = None, _n: int = number, _loc: str = place) -> RecordError:
            return RecordError(file, _n, at, expected, got, _loc)

        if not isinstance(record, dict) or not isinstance(record.get(body), dict):
            yield error(f"({kind})", f"{_KIND_NAMES[kind]}: an object with {body}", record)
            continue
        try:
            yield read(record, number, place, error)
        except RecordError as exc:
            yield exc


_KIND_NAMES = {"record": "an Argilla record", "task": "a Label Studio task"}


def finish_record(fields: dict[str, Any], notes: Annotations, collected: Responses, prov: dict[str, Any] | None,
                  error: ErrorOf, *, number: int, locator: str, answers: str, needs: str) -> RawRecord:
    """The record with its reviews (and the extras a clinreason export carries); reviews without a drafted
    rationale to review are an error at `answers`, naming where the rationale was looked for (`needs`)."""
    notes.reviews = collected.finish()
    review_extras(prov, notes.reviews, error)
    if notes.reviews and not notes.drafts:
        raise error(answers, f"a rationale to review: {answers} need {needs} (--map rationale=NAME)")
    return RawRecord(number, locator, fields, annotations=notes)


# --- reading the files -------------------------------------------------------------------------------

def load_json(path: Path, file: str, what: str) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"), object_pairs_hook=pairs_hook)
    except FileNotFoundError:
        raise FileFormatError(f"{file}: no {path.name} ({what})") from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{file}: {path.name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                              f"offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{file}: {path.name} is not valid JSON at line {exc.lineno} column {exc.colno}: "
                              f"{exc.msg}") from None
    except RecursionError:
        raise FileFormatError(f"{file}: {path.name}: JSON nested too deeply to read") from None
    except OSError as exc:
        raise FileFormatError(f"{file}: cannot read {path.name} ({exc.strerror or exc})") from None
