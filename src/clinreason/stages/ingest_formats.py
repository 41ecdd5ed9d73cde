"""Turning raw records of question banks into domain Items: the native layouts (MedQA, MedMCQA,
PubMedQA, MMLU, CMExam) and the generic mapped ones (`--map field=column`). A converter returns an Item
or raises RecordError naming the field and what was expected; the file readers are ingest_readers.py.
Nothing here touches the database.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from clinreason.domain.items import Item, SourceRef, detect_language, normalise_text
from clinreason.stages.ingest_readers import (
    DupDict,
    FileFormatError,
    Progress,
    RawRecord,
    RecordError,
    display_name,
    pairs_hook,
    read_csv,
    read_hf,
    read_json_lines,
    read_parquet,
    read_pubmedqa,
    read_xlsx,
    require_utf8,
)

NATIVE_FORMATS = ("medqa", "medmcqa", "pubmedqa", "mmlu", "cmexam")
GENERIC_FORMATS = ("jsonl", "csv", "parquet", "hf")
FORMATS = ("auto", *NATIVE_FORMATS, *GENERIC_FORMATS)

DEFAULT_LICENSES = {"medqa": "MIT", "medmcqa": "MIT", "pubmedqa": "MIT", "mmlu": "MIT",
                    "cmexam": "research use only (CMExam)"}

MAPPABLE_FIELDS = ("question", "options", "answer", "answer_text", "explanation", "specialty", "context",
                   "language", "id")

_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OPTION_LINE = re.compile(r"^\s*([A-Z])\s*[\.\)、:：．]?\s*(.*)$", re.S)
_NO_ANSWER = {"", "nan", "none", "null", "n/a"}
#: characters no database column can hold: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates
#: (not encodable as UTF-8; JSON's "\ud800" escapes produce them)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
#: the widths of the columns that hold these fields (tables.py); longer values are refused, not cut
LANGUAGE_MAX, SPECIALTY_MAX, SOURCE_MAX, LICENSE_MAX, SUBJECT_MAX = 16, 200, 100, 200, 200


# --- helpers shared by the converters ------------------------------------------------------------

def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _NO_ANSWER


def _text(rec: RawRecord, file: str, field: str, value: Any, *, required: bool = True) -> str | None:
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(file, rec.number, field, "a non-empty text", value, rec.locator)
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RecordError(file, rec.number, field, "a text", value, rec.locator)
    return value


def _stem(rec: RawRecord, file: str, field: str, value: Any) -> str:
    """A required text field (the question): an error naming the record when it is empty."""
    text = _text(rec, file, field, value)
    assert text is not None  # required: _text raised otherwise
    return text


def parse_option_block(text: str) -> list[tuple[str, str]]:
    """'A 原发病\\nB 出血部位' (literal backslash-n, as CMExam writes it, or real newlines) -> pairs."""
    parts = [p for p in re.split(r"\\n|\r?\n", text) if p.strip()]
    pairs: list[tuple[str, str]] = []
    for part in parts:
        m = _OPTION_LINE.match(part)
        if not m:
            raise ValueError(f"option line {part!r} does not start with a label letter")
        pairs.append((m.group(1), m.group(2).strip()))
    return pairs


def _options(rec: RawRecord, file: str, field: str, value: Any) -> dict[str, str]:
    """Options from a mapping, a list (labelled A, B, ...) or a labelled text block."""
    pairs: list[tuple[str, str]]
    if isinstance(value, _PairList):
        pairs = list(value)
    elif isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        if len(value) > len(_LABELS):
            raise RecordError(file, rec.number, field, f"at most {len(_LABELS)} options", len(value), rec.locator)
        pairs = [(_LABELS[i], v) for i, v in enumerate(value)]
    elif isinstance(value, str):
        try:
            pairs = parse_option_block(value)
        except ValueError as exc:
            raise RecordError(file, rec.number, field, "lines like 'A text' separated by \\n", str(exc), rec.locator) from None
    elif _is_missing(value):
        return {}
    else:
        raise RecordError(file, rec.number, field, "a mapping, a list or a labelled text block of options", value, rec.locator)
    options: dict[str, str] = {}
    for label, text in pairs:
        label = label.strip()
        if not label:
            raise RecordError(file, rec.number, field, "non-empty option labels", label, rec.locator)
        if label in options:
            raise RecordError(file, rec.number, f"{field}.{label}", "unique option labels (duplicate label)", label, rec.locator)
        if isinstance(text, (int, float)) and not isinstance(text, bool) and not _is_missing(text):
            text = str(text)
        if not isinstance(text, str) or not text.strip():
            raise RecordError(file, rec.number, f"{field}.{label}", "a non-empty option text", text, rec.locator)
        options[label] = text
    if len(options) == 1:
        raise RecordError(file, rec.number, field, "at least two options", len(options), rec.locator)
    return options


class _PairList(list):
    """Options as (label, text) pairs, kept as pairs so duplicate labels are still visible."""



def _answer_labels(rec: RawRecord, file: str, field: str, value: Any, options: dict[str, str],
                   *, index_base: int = 0) -> list[str]:
    """Gold answer as a set of labels. Accepts 'A', 'ABCD', 'A,C', ['A', 'C'], an option's text, or an
    integer index (0-based unless the format says otherwise). Missing -> [] (no gold answer)."""
    if _is_missing(value):
        return []
    if isinstance(value, bool):
        raise RecordError(file, rec.number, field, "an option label", value, rec.locator)
    labels: list[str]
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or float(value) != int(value):
            raise RecordError(file, rec.number, field, "an integer option index", value, rec.locator)
        idx = int(value) - index_base
        keys = list(options)
        if not 0 <= idx < len(keys):
            span = f"{index_base}-{len(keys) - 1 + index_base}"
            raise RecordError(file, rec.number, field, f"an option index in {span}", value, rec.locator)
        return [keys[idx]]
    if isinstance(value, (list, tuple)):
        labels = [str(v).strip() for v in value]
    elif isinstance(value, str):
        v = value.strip()
        if options and v in options:
            labels = [v]
        elif options and re.fullmatch(r"[A-Z](\s*[,;/ ]?\s*[A-Z])*", v):
            labels = re.findall(r"[A-Z]", v)
        else:
            by_text = [k for k, t in options.items() if normalise_text(t) == normalise_text(v)]
            if by_text:
                labels = by_text[:1]
            elif not options:
                return []  # open question: the text is the answer (handled by the caller)
            else:
                raise RecordError(file, rec.number, field,
                                  f"one of the option labels {', '.join(options)}", value, rec.locator)
    else:
        raise RecordError(file, rec.number, field, "option label(s)", value, rec.locator)
    if len(set(labels)) != len(labels):
        raise RecordError(file, rec.number, field, "each answer label once", value, rec.locator)
    unknown = [label for label in labels if label not in options]
    if unknown:
        raise RecordError(file, rec.number, field,
                          f"answer label(s) among the options {', '.join(options) or '(none)'}", value, rec.locator)
    return sorted(labels)


def _plain(value: Any) -> Any:
    """Make a value JSON-safe for metadata: NaN -> None, ±Infinity -> "inf"/"-inf" (JSON has neither;
    PostgreSQL's jsonb refuses them), numpy scalars -> Python, bytes -> text (or base64), dates and times ->
    ISO 8601, anything else (Decimal, …) -> its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars (and 0-d arrays)
        try:
            return _plain(value.item())
        except (AttributeError, ValueError, TypeError):
            return str(value)
    if hasattr(value, "tolist"):  # numpy arrays
        return _plain(value.tolist())
    return str(value)


# --- native formats -------------------------------------------------------------------------------

def _medqa(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    for key in ("question", "options", "answer_idx"):
        if key not in f:
            raise RecordError(file, rec.number, key, "present (MedQA layout: question, options, answer_idx)", None, rec.locator)
    question = _stem(rec, file, "question", f["question"])
    if not isinstance(f["options"], dict):
        raise RecordError(file, rec.number, "options", "an object of label -> text", f["options"], rec.locator)
    options = _options(rec, file, "options", _as_pairs(f["options"]))
    answer = _answer_labels(rec, file, "answer_idx", f["answer_idx"], options)
    meta = {k: _plain(v) for k, v in f.items() if k in ("meta_info", "answer")}
    return Item(question=question, options=options, answer_labels=answer, language=detect_language(question),
                metadata=meta)


def _as_pairs(obj: dict[str, Any]) -> _PairList:
    return _PairList(obj.pairs if isinstance(obj, DupDict) else obj.items())


def _medmcqa(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    for key in ("question", "opa", "opb", "opc", "opd", "cop"):
        if key not in f:
            raise RecordError(file, rec.number, key, "present (MedMCQA layout: question, opa..opd, cop)", None, rec.locator)
    question = _stem(rec, file, "question", f["question"])
    options = _options(rec, file, "options", _PairList(zip("ABCD", (f["opa"], f["opb"], f["opc"], f["opd"]))))
    cop = f["cop"]
    if _is_missing(cop):
        answer: list[str] = []
    elif isinstance(cop, bool) or not isinstance(cop, int) or not 1 <= cop <= 4:
        raise RecordError(file, rec.number, "cop", "the correct option as an integer 1-4 (1 = opa)", cop, rec.locator)
    else:
        answer = ["ABCD"[cop - 1]]
    meta = {k: _plain(f.get(k)) for k in ("id", "topic_name", "choice_type") if f.get(k) is not None}
    return Item(question=question, options=options, answer_labels=answer, language=detect_language(question),
                specialty=_text(rec, file, "subject_name", f.get("subject_name"), required=False),
                reference_explanation=_text(rec, file, "exp", f.get("exp"), required=False), metadata=meta)


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def _pubmedqa(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    if "QUESTION" not in f:
        raise RecordError(file, rec.number, "QUESTION", "present (PubMedQA layout)", None, rec.locator)
    question = _stem(rec, file, "QUESTION", f["QUESTION"])
    decision = f.get("final_decision")
    if _is_missing(decision):
        answer: list[str] = []
    elif decision not in ("yes", "no", "maybe"):
        raise RecordError(file, rec.number, "final_decision", "yes, no or maybe", decision, rec.locator)
    else:
        answer = [{"yes": "A", "no": "B", "maybe": "C"}[decision]]
    contexts = f.get("CONTEXTS") or []
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise RecordError(file, rec.number, "CONTEXTS", "a list of abstract passages", contexts, rec.locator)
    labels = f.get("LABELS") or []
    if isinstance(labels, list) and len(labels) == len(contexts):
        context = "\n\n".join(f"{lab}: {c}" for lab, c in zip(labels, contexts))
    else:
        context = "\n\n".join(contexts)
    meta = {"pmid": rec.locator.removeprefix("PMID "),
            **{k.lower(): _plain(f[k]) for k in ("MESHES", "YEAR", "reasoning_required_pred", "reasoning_free_pred")
               if k in f}}
    return Item(question=question, options=dict(PUBMEDQA_OPTIONS), answer_labels=answer, language="en",
                context=context or None,
                reference_explanation=_text(rec, file, "LONG_ANSWER", f.get("LONG_ANSWER"), required=False),
                metadata=meta)


def _mmlu(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    if len(f) != 6:
        raise RecordError(file, rec.number, "(row)", "6 columns: question,A,B,C,D,answer", len(f), rec.locator)
    question = _stem(rec, file, "question", f["0"])
    options = _options(rec, file, "options", _PairList(zip("ABCD", (f["1"], f["2"], f["3"], f["4"]))))
    answer = _answer_labels(rec, file, "answer", f["5"], options)
    subject = mmlu_subject(file)
    return Item(question=question, options=options, answer_labels=answer, language=detect_language(question),
                specialty=subject, metadata={"subject": subject})


def mmlu_subject(file_name: str) -> str:
    stem = Path(file_name).stem
    return re.sub(r"_(test|dev|val)$", "", stem)


def _cmexam(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    for key in ("Question", "Options", "Answer"):
        if key not in f:
            raise RecordError(file, rec.number, key, "a column (CMExam layout: Question, Options, Answer, Explanation)",
                              None, rec.locator)
    question = _stem(rec, file, "Question", f["Question"])
    options = _options(rec, file, "Options", f["Options"])
    if not options:
        raise RecordError(file, rec.number, "Options", "options like 'A 原发病\\nB 出血部位'", f["Options"], rec.locator)
    answer = _answer_labels(rec, file, "Answer", f["Answer"], options)
    return Item(question=question, options=options, answer_labels=answer, language="zh",
                reference_explanation=_text(rec, file, "Explanation", f.get("Explanation"), required=False))


# --- generic (mapped) formats ---------------------------------------------------------------------

def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`--map field=column` pairs -> {field: column}; `options` may name several columns: a,b,c,d."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--map {pair!r}: expected field=column (fields: {', '.join(MAPPABLE_FIELDS)})")
        key, column = (s.strip() for s in pair.split("=", 1))
        if key not in MAPPABLE_FIELDS:
            raise ValueError(f"--map {pair!r}: unknown field '{key}' (fields: {', '.join(MAPPABLE_FIELDS)})")
        if not column:
            raise ValueError(f"--map {pair!r}: empty column name")
        mapping[key] = column
    return mapping


def _generic(rec: RawRecord, file: str, mapping: dict[str, str]) -> Item:
    f = rec.fields

    def col(field: str, required: bool = False) -> Any:
        name = mapping.get(field, field)
        if name not in f:
            if required:
                raise RecordError(file, rec.number, name, f"present (mapped to '{field}'; use --map {field}=COLUMN)",
                                  None, rec.locator)
            return None
        return f[name]

    question = _stem(rec, file, mapping.get("question", "question"), col("question", required=True))
    opt_spec = mapping.get("options", "options")
    if "," in opt_spec:
        columns = [c.strip() for c in opt_spec.split(",")]
        missing = [c for c in columns if c not in f]
        if missing:
            raise RecordError(file, rec.number, missing[0], "present (named in --map options=...)", None, rec.locator)
        raw_options: Any = _PairList(zip(_LABELS, (f[c] for c in columns)))
    else:
        raw_options = f.get(opt_spec)
        if isinstance(raw_options, DupDict):
            raw_options = _as_pairs(raw_options)
        elif isinstance(raw_options, str) and raw_options.strip().startswith(("{", "[")):
            try:
                raw_options = json.loads(raw_options, object_pairs_hook=pairs_hook)
                if isinstance(raw_options, DupDict):
                    raw_options = _as_pairs(raw_options)
            except (json.JSONDecodeError, RecursionError):
                pass  # not JSON after all: read as a labelled text block
    options = _options(rec, file, opt_spec, raw_options)
    answer_field = mapping.get("answer", "answer")
    raw_answer = col("answer")
    if isinstance(raw_answer, str) and raw_answer.strip().isdigit() and options:
        raw_answer = int(raw_answer)
    answer = _answer_labels(rec, file, answer_field, raw_answer, options)
    answer_text = _text(rec, file, mapping.get("answer_text", "answer_text"), col("answer_text"), required=False)
    if not options and not answer_text and not _is_missing(raw_answer):
        answer_text = _text(rec, file, answer_field, raw_answer, required=False)
    language = col("language")
    language = language.strip() if isinstance(language, str) and language.strip() else detect_language(question)
    used = {mapping.get(k, k) for k in MAPPABLE_FIELDS} | set(opt_spec.split(","))
    meta = {str(k): _plain(v) for k, v in f.items() if k not in used}
    ext_id = col("id")
    if ext_id is not None:
        meta["source_id"] = _plain(ext_id)
    return Item(question=question, options=options, answer_labels=answer, answer_text=answer_text,
                language=language,
                specialty=_text(rec, file, mapping.get("specialty", "specialty"), col("specialty"), required=False),
                context=_text(rec, file, mapping.get("context", "context"), col("context"), required=False),
                reference_explanation=_text(rec, file, mapping.get("explanation", "explanation"), col("explanation"),
                                            required=False),
                metadata=meta)



def _unstorable(value: Any, where: str) -> tuple[str, str] | None:
    """(field, character) of the first text in `value` (keys included) that no database can store."""
    if isinstance(value, str):
        m = _UNSTORABLE.search(value)
        return (where, m.group()) if m else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _unstorable(str(k), f"{where}.{k!s}") or _unstorable(v, f"{where}.{k!s}")
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _unstorable(v, f"{where}[{i}]")
            if found:
                return found
    return None


def check_storable(item: Item, rec: RawRecord, file: str) -> None:
    """RecordError when a field holds what the database cannot: NUL, a lone surrogate, or a value wider
    than its column."""
    for where, value in (("question", item.question), ("options", item.options), ("answer_text", item.answer_text),
                         ("explanation", item.reference_explanation), ("context", item.context),
                         ("specialty", item.specialty), ("language", item.language), ("metadata", item.metadata)):
        found = _unstorable(value, where)
        if found:
            name, char = found
            what = "NUL" if char == "\x00" else "a lone UTF-16 surrogate"
            raise RecordError(file, rec.number, _short_field(name), f"text without {what} characters",
                              f"U+{ord(char):04X}", rec.locator)
    if len(item.language) > LANGUAGE_MAX:
        raise RecordError(file, rec.number, "language", f"a language code of at most {LANGUAGE_MAX} characters",
                          item.language, rec.locator)
    if item.specialty is not None and len(item.specialty) > SPECIALTY_MAX:
        raise RecordError(file, rec.number, "specialty", f"at most {SPECIALTY_MAX} characters",
                          len(item.specialty), rec.locator)


def _short_field(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _check_label(kind: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if len(value) > limit:
        raise FileFormatError(f"--{kind}: at most {limit} characters, got {len(value)}")
    if _UNSTORABLE.search(value):
        raise FileFormatError(f"--{kind}: text without NUL or lone surrogate characters")


def read_items(path: Path, fmt: str, *, mapping: dict[str, str] | None = None, source: str | None = None,
               license: str | None = None, progress: Progress | None = None
               ) -> Iterator[tuple[RawRecord, Item] | RecordError]:
    """Stream a file as (raw record, Item) pairs, or RecordError for a record that is not valid."""
    mapping = mapping or {}
    file = display_name(path)
    _check_label("source", source, SOURCE_MAX)
    _check_label("license", license, LICENSE_MAX)
    # a name taken from the file is cut to its column's width; one the user typed is refused above
    src = source or (fmt if fmt in NATIVE_FORMATS else Path(file).stem[:SOURCE_MAX])
    lic = license or DEFAULT_LICENSES.get(src) or DEFAULT_LICENSES.get(fmt)
    subject = mmlu_subject(file)[:SUBJECT_MAX] if fmt == "mmlu" else None
    if fmt in ("medqa", "medmcqa", "jsonl", "pubmedqa", "mmlu", "csv") and path.is_file():
        require_utf8(path)

    raw_iter: Iterator[RawRecord | RecordError]
    if fmt in ("medqa", "medmcqa", "jsonl"):
        raw_iter = read_json_lines(path, progress)
    elif fmt == "pubmedqa":
        raw_iter = read_pubmedqa(path, progress)
    elif fmt == "mmlu":
        raw_iter = read_csv(path, progress, header=False)
    elif fmt == "csv":
        raw_iter = read_csv(path, progress, header=True)
    elif fmt == "cmexam":
        raw_iter = read_xlsx(path)
    elif fmt == "parquet":
        raw_iter = read_parquet(path)
    elif fmt == "hf":
        raw_iter = read_hf(path)
    else:
        raise FileFormatError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")

    convert: Callable[[RawRecord, str], Item]
    convert = {"medqa": _medqa, "medmcqa": _medmcqa, "pubmedqa": _pubmedqa, "mmlu": _mmlu,
               "cmexam": _cmexam}.get(fmt) or (lambda rec, f: _generic(rec, f, mapping))

    for raw in raw_iter:
        if isinstance(raw, RecordError):
            yield raw
            continue
        try:
            item = convert(raw, file)
            check_storable(item, raw, file)
        except RecordError as err:
            yield err
            continue
        item.sources = [SourceRef(source=src, file=file, record=str(raw.number), subject=subject, license=lic)]
        yield raw, item
