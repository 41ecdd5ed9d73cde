"""The mapped layouts (`--format jsonl|json|csv|tsv|parquet|hf`, and the questions of annotation tools):
`--map field=column` says which column holds what. A column `^name` is read from an object enclosing a JSON
document's record (`^*`: the key its `*` matched). Options come as a mapping, a list, a labelled text block,
several columns, a cell holding JSON or a Python literal, or a list of objects (`--map option_text=KEY`,
optionally `--map option_label=KEY`); they are stored labelled A, B, ... in the order given. A bare
integer answer is read with `--answer-base 0|1` and never guessed: without it the file is refused.
Nothing here touches the database.
"""

from __future__ import annotations

import math
from typing import Any

from clinreason.domain.items import Item, detect_language
from clinreason.stages.ingest_fields import (
    _NO_ANSWER,
    LABELS,
    PairList,
    answer_labels,
    as_pairs,
    is_missing,
    options_value,
    plain,
    stem_value,
    text_value,
)
from clinreason.stages.ingest_json import enclosing_value, parse_structure
from clinreason.stages.ingest_readers import DupDict, FileFormatError, RawRecord, RecordError

#: the fields `--map` names a record's column for; option_text and option_label name keys inside option
#: objects, rationale the field (or question) that holds a drafted rationale (annotation tools only)
COLUMN_FIELDS = ("question", "options", "answer", "answer_text", "explanation", "specialty", "context", "language",
                 "id")
MAPPABLE_FIELDS = (*COLUMN_FIELDS, "option_text", "option_label", "rationale")
#: the columns a record read without `--map` uses (the rest is kept as metadata)
_DEFAULT_USED = frozenset((*COLUMN_FIELDS, "options"))


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`--map field=column` pairs -> {field: column}; `options` may name several columns: a,b,c,d. A column
    `^name` is read from an enclosing object of a JSON document's record (`^*`: the key `*` matched)."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--map {pair!r}: expected field=column (fields: {', '.join(MAPPABLE_FIELDS)})")
        key, column = (s.strip() for s in pair.split("=", 1))
        if key not in MAPPABLE_FIELDS:
            raise ValueError(f"--map {pair!r}: unknown field '{key}' (fields: {', '.join(MAPPABLE_FIELDS)})")
        if not column or column == "^":
            raise ValueError(f"--map {pair!r}: empty column name")
        if key == "options" and column.startswith("^") and "," in column:
            raise ValueError(f"--map {pair!r}: options read from several columns cannot come from an enclosing "
                             "object")
        mapping[key] = column
    if "option_label" in mapping and "option_text" not in mapping:
        raise ValueError("--map option_label=KEY needs --map option_text=KEY too (options given as a list of "
                         "objects)")
    return mapping


class AnswerBaseUnknown(FileFormatError):
    """A bare integer answer and no stated base: it is never guessed, so the whole file is refused."""

    def __init__(self, file: str, rec: RawRecord, field: str, value: Any, options: dict[str, str]):
        keys = list(options)
        n = int(value)
        zero = f"{keys[n]}" if 0 <= n < len(keys) else "no option"
        one = f"{keys[n - 1]}" if 1 <= n <= len(keys) else "no option"
        where = f"record {rec.number}" + (f" ({rec.locator})" if rec.locator and rec.locator != f"record {rec.number}"
                                          else "")
        super().__init__(f"{file}: {where}: field '{field}': '{n}' is {zero} if 0-based, {one} if 1-based: pass "
                         "--answer-base 0 or --answer-base 1")


def _index_like(value: Any, options: dict[str, str]) -> bool:
    """An integer (or integral float, or a string of digits that is not itself an option label)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return str(value) not in options
    if isinstance(value, float):
        return math.isfinite(value) and value == int(value) and str(int(value)) not in options
    return isinstance(value, str) and value.strip().isdigit() and value.strip() not in options


def _generic_answer(rec: RawRecord, file: str, field: str, value: Any, options: dict[str, str], *,
                    base: int | None, source_labels: dict[str, str] | None) -> list[str]:
    """The gold answer of a mapped layout. An option index is read with the stated `base` and refused when
    none is stated; with options given as objects and `--map option_label`, the answer names those labels
    (`"4"` is the option whose label is 4)."""
    value = parse_structure(value)
    if is_missing(value) or not options:
        return []
    parts = value if isinstance(value, list) else [value]
    if source_labels is not None:
        letter_of = {src: letter for letter, src in source_labels.items()}
        labels = []
        for part in parts:
            key = _label_text(part)
            if key not in letter_of:
                raise RecordError(file, rec.number, field,
                                  f"one of the option labels {', '.join(letter_of)} (--map option_label)", part,
                                  rec.locator)
            labels.append(letter_of[key])
        if len(set(labels)) != len(labels):
            raise RecordError(file, rec.number, field, "each answer label once", value, rec.locator)
        return sorted(labels)
    if any(_index_like(p, options) for p in parts):
        first = next(p for p in parts if _index_like(p, options))
        if base is None:
            raise AnswerBaseUnknown(file, rec, field, int(float(first)) if not isinstance(first, str) else int(first),
                                    options)
        keys = list(options)
        converted = []
        for part in parts:
            if not _index_like(part, options):
                converted.append(part)
                continue
            idx = int(float(part)) - base if not isinstance(part, str) else int(part) - base
            if not 0 <= idx < len(keys):
                raise RecordError(file, rec.number, field,
                                  f"an option index in {base}-{len(keys) - 1 + base} (--answer-base {base})", part,
                                  rec.locator)
            converted.append(keys[idx])
        value = converted if isinstance(value, list) else converted[0]
    return answer_labels(rec, file, field, value, options)


def _label_text(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value).strip()


def _option_objects(rec: RawRecord, file: str, field: str, value: list[Any], mapping: dict[str, str]
                    ) -> tuple[PairList, dict[str, str] | None]:
    """Options given as a list of objects (`[{"key": 1, "text": "..."}, ...]`): labelled A, B, ... in the
    order given; with `--map option_label`, also {letter: the source's own label}."""
    text_key, label_key = mapping.get("option_text"), mapping.get("option_label")
    if text_key is None:
        keys = sorted({str(k) for o in value if isinstance(o, dict) for k in o})
        raise RecordError(file, rec.number, field, "options as texts; for a list of objects pass --map "
                          f"option_text=KEY (keys seen: {', '.join(keys[:8]) or 'none'})", None, rec.locator)
    if len(value) > len(LABELS):
        raise RecordError(file, rec.number, field, f"at most {len(LABELS)} options", len(value), rec.locator)
    pairs = PairList()
    sources: dict[str, str] = {}
    for i, obj in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(obj, dict):
            raise RecordError(file, rec.number, where, "an object (--map option_text names its text)", obj,
                              rec.locator)
        if text_key not in obj:
            raise RecordError(file, rec.number, f"{where}.{text_key}", "present (--map option_text)", None,
                              rec.locator)
        letter = LABELS[i]
        pairs.append((letter, obj[text_key]))
        if label_key is not None:
            if is_missing(obj.get(label_key)):
                raise RecordError(file, rec.number, f"{where}.{label_key}", "an option label (--map option_label)",
                                  obj.get(label_key), rec.locator)
            own = _label_text(obj[label_key])
            if own in sources.values():
                raise RecordError(file, rec.number, f"{where}.{label_key}", "unique option labels (duplicate label)",
                                  own, rec.locator)
            sources[letter] = own
    return pairs, (sources if label_key is not None else None)


def convert_mapped(rec: RawRecord, file: str, mapping: dict[str, str], answer_base: int | None = None) -> Item:
    f = rec.fields

    def col(field: str, required: bool = False) -> Any:
        if not mapping and field in f:  # the default field names: the column is there, read it
            return f[field]
        name = mapping.get(field, field)
        if name.startswith("^"):
            found, value = enclosing_value(rec, name)
        else:
            found, value = name in f, f.get(name)
        if not found:
            if required:
                expected = (f"present in an enclosing object (--map {field}={name})" if name.startswith("^")
                            else f"present (mapped to '{field}'; use --map {field}=COLUMN)")
                raise RecordError(file, rec.number, name, expected, None, rec.locator)
            return None
        return value

    question = stem_value(rec, file, mapping.get("question", "question"), col("question", required=True))
    opt_spec = mapping.get("options", "options")
    source_labels: dict[str, str] | None = None
    if "," in opt_spec:
        columns = [c.strip() for c in opt_spec.split(",")]
        missing = [c for c in columns if c not in f]
        if missing:
            raise RecordError(file, rec.number, missing[0], "present (named in --map options=...)", None, rec.locator)
        raw_options: Any = PairList(zip(LABELS, (f[c] for c in columns)))
    else:
        raw_options = parse_structure(col("options"))
        if isinstance(raw_options, DupDict):
            raw_options = as_pairs(raw_options)
        elif isinstance(raw_options, list) and raw_options and any(isinstance(o, dict) for o in raw_options):
            raw_options, source_labels = _option_objects(rec, file, opt_spec, raw_options, mapping)
    options = options_value(rec, file, opt_spec, raw_options)
    answer_field = mapping.get("answer", "answer")
    raw_answer = col("answer")
    answer = _generic_answer(rec, file, answer_field, raw_answer, options, base=answer_base,
                             source_labels=source_labels)
    answer_text = text_value(rec, file, mapping.get("answer_text", "answer_text"), col("answer_text"), required=False)
    if not options and not answer_text and not is_missing(raw_answer):
        answer_text = text_value(rec, file, answer_field, raw_answer, required=False)
    language = col("language")
    language = language.strip() if isinstance(language, str) and language.strip() else detect_language(question)
    used = _DEFAULT_USED if not mapping else {mapping.get(k, k) for k in COLUMN_FIELDS} | set(opt_spec.split(","))
    meta = {str(k): plain(v) for k, v in f.items() if k not in used}
    ext_id = col("id")
    if ext_id is not None:
        meta["source_id"] = plain(ext_id)
    if source_labels is not None:
        meta["option_labels"] = dict(source_labels)  # the source's own labels, by the letter each is stored as
    return Item(question=question, options=options, answer_labels=answer, answer_text=answer_text,
                language=language,
                specialty=text_value(rec, file, mapping.get("specialty", "specialty"), col("specialty"), required=False),
                context=text_value(rec, file, mapping.get("context", "context"), col("context"), required=False),
                reference_explanation=text_value(rec, file, mapping.get("explanation", "explanation"), col("explanation"),
                                            required=False),
                metadata=meta)


def convert_default(rec: RawRecord, file: str, answer_base: int | None = None) -> Item:
    """`convert_mapped(rec, file, {}, answer_base)`: a record read without `--map`. The usual record (a
    text question, options as an object of distinct trimmed labels -> non-empty texts, the answer one of
    those labels as it is, no answer_text) is converted here directly, with the same result; any other
    record (whatever could be refused, or read another way) by `convert_mapped` itself."""
    f = rec.fields
    question, options, answer = f.get("question"), f.get("options"), f.get("answer")
    if type(question) is not str or type(options) is not dict or type(answer) is not str \
            or len(options) < 2 or answer not in options or f.get("answer_text") is not None \
            or question.strip().lower() in _NO_ANSWER or answer.lower() in _NO_ANSWER or answer[:1] in "[{(" \
            or answer.strip() != answer:
        return convert_mapped(rec, file, {}, answer_base)
    for label, text in options.items():
        if not label or label.strip() != label or type(text) is not str or not text.strip():
            return convert_mapped(rec, file, {}, answer_base)
    language = f.get("language")
    language = language.strip() if isinstance(language, str) and language.strip() else detect_language(question)
    meta = {str(k): plain(v) for k, v in f.items() if k not in _DEFAULT_USED}
    ext_id = f.get("id")
    if ext_id is not None:
        meta["source_id"] = plain(ext_id)
    specialty, context, explanation = f.get("specialty"), f.get("context"), f.get("explanation")
    return Item(question=question, options=dict(options), answer_labels=[answer], answer_text=None,
                language=language,
                specialty=None if specialty is None else text_value(rec, file, "specialty", specialty, required=False),
                context=None if context is None else text_value(rec, file, "context", context, required=False),
                reference_explanation=None if explanation is None else text_value(
                    rec, file, "explanation", explanation, required=False),
                metadata=meta)
