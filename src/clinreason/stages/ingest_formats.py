"""Turning raw records of question banks into domain Items: the native layouts (MedQA, MedMCQA,
PubMedQA, MMLU, CMExam) here, the generic mapped ones (`--map field=column`) in ingest_generic.py, and
`read_items`, which streams any format's file. A converter returns an Item or raises RecordError naming
the field and what was expected; the file readers are ingest_readers.py (ingest_json.py for one JSON
document, ingest_annotated.py for annotation tools). Nothing here touches the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from clinreason.domain.items import Item, SourceRef, detect_language
from clinreason.domain.rubric import Rubric, default_rubric
from clinreason.stages.ingest_fields import (
    PairList,
    answer_labels,
    as_pairs,
    is_missing,
    options_value,
    plain,
    stem_value,
    text_value,
)
from clinreason.stages.ingest_generic import (
    MAPPABLE_FIELDS,
    AnswerBaseUnknown,
    convert_default,
    convert_mapped,
    parse_mapping,
)
from clinreason.stages.ingest_json import read_json_document
from clinreason.stages.ingest_readers import (
    FileFormatError,
    Progress,
    RawRecord,
    RecordError,
    display_name,
    read_csv,
    read_hf,
    read_json_lines,
    read_parquet,
    read_pubmedqa,
    read_xlsx,
    require_utf8,
    sniff_delimiter,
)

NATIVE_FORMATS = ("medqa", "medmcqa", "pubmedqa", "mmlu", "cmexam")
GENERIC_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "hf")
#: annotation tools: questions with their drafts and reviews (stages/ingest_annotated.py)
ANNOTATION_FORMATS = ("argilla", "labelstudio")
FORMATS = ("auto", *NATIVE_FORMATS, *GENERIC_FORMATS, *ANNOTATION_FORMATS)

DEFAULT_LICENSES = {"medqa": "MIT", "medmcqa": "MIT", "pubmedqa": "MIT", "mmlu": "MIT",
                    "cmexam": "research use only (CMExam)"}

#: characters no database column can hold: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates
#: (not encodable as UTF-8; JSON's "\ud800" escapes produce them)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
#: the widths of the columns that hold these fields (tables.py); longer values are refused, not cut
LANGUAGE_MAX, SPECIALTY_MAX, SOURCE_MAX, LICENSE_MAX, SUBJECT_MAX = 16, 200, 100, 200, 200

__all__ = ["ANNOTATION_FORMATS", "FORMATS", "GENERIC_FORMATS", "MAPPABLE_FIELDS", "NATIVE_FORMATS", "AnswerBaseUnknown",
           "ReadOptions", "check_storable", "mmlu_subject", "parse_mapping", "read_items"]


# --- native formats -------------------------------------------------------------------------------

def _medqa(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    for key in ("question", "options", "answer_idx"):
        if key not in f:
            raise RecordError(file, rec.number, key, "present (MedQA layout: question, options, answer_idx)", None, rec.locator)
    question = stem_value(rec, file, "question", f["question"])
    if not isinstance(f["options"], dict):
        raise RecordError(file, rec.number, "options", "an object of label -> text", f["options"], rec.locator)
    options = options_value(rec, file, "options", as_pairs(f["options"]))
    answer = answer_labels(rec, file, "answer_idx", f["answer_idx"], options)
    meta = {k: plain(v) for k, v in f.items() if k in ("meta_info", "answer")}
    return Item(question=question, options=options, answer_labels=answer, language=detect_language(question),
                metadata=meta)


def _medmcqa(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    for key in ("question", "opa", "opb", "opc", "opd", "cop"):
        if key not in f:
            raise RecordError(file, rec.number, key, "present (MedMCQA layout: question, opa..opd, cop)", None, rec.locator)
    question = stem_value(rec, file, "question", f["question"])
    options = options_value(rec, file, "options", PairList(zip("ABCD", (f["opa"], f["opb"], f["opc"], f["opd"]))))
    cop = f["cop"]
    if is_missing(cop):
        answer: list[str] = []
    elif isinstance(cop, bool) or not isinstance(cop, int) or not 1 <= cop <= 4:
        raise RecordError(file, rec.number, "cop", "the correct option as an integer 1-4 (1 = opa)", cop, rec.locator)
    else:
        answer = ["ABCD"[cop - 1]]
    meta = {k: plain(f.get(k)) for k in ("id", "topic_name", "choice_type") if f.get(k) is not None}
    return Item(question=question, options=options, answer_labels=answer, language=detect_language(question),
                specialty=text_value(rec, file, "subject_name", f.get("subject_name"), required=False),
                reference_explanation=text_value(rec, file, "exp", f.get("exp"), required=False), metadata=meta)


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def _pubmedqa(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    if "QUESTION" not in f:
        raise RecordError(file, rec.number, "QUESTION", "present (PubMedQA layout)", None, rec.locator)
    question = stem_value(rec, file, "QUESTION", f["QUESTION"])
    decision = f.get("final_decision")
    if is_missing(decision):
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
            **{k.lower(): plain(f[k]) for k in ("MESHES", "YEAR", "reasoning_required_pred", "reasoning_free_pred")
               if k in f}}
    return Item(question=question, options=dict(PUBMEDQA_OPTIONS), answer_labels=answer, language="en",
                context=context or None,
                reference_explanation=text_value(rec, file, "LONG_ANSWER", f.get("LONG_ANSWER"), required=False),
                metadata=meta)


def _mmlu(rec: RawRecord, file: str) -> Item:
    f = rec.fields
    if len(f) != 6:
        raise RecordError(file, rec.number, "(row)", "6 columns: question,A,B,C,D,answer", len(f), rec.locator)
    question = stem_value(rec, file, "question", f["0"])
    options = options_value(rec, file, "options", PairList(zip("ABCD", (f["1"], f["2"], f["3"], f["4"]))))
    answer = answer_labels(rec, file, "answer", f["5"], options)
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
    question = stem_value(rec, file, "Question", f["Question"])
    options = options_value(rec, file, "Options", f["Options"])
    if not options:
        raise RecordError(file, rec.number, "Options", "options like 'A 原发病\\nB 出血部位'", f["Options"], rec.locator)
    answer = answer_labels(rec, file, "Answer", f["Answer"], options)
    return Item(question=question, options=options, answer_labels=answer, language="zh",
                reference_explanation=text_value(rec, file, "Explanation", f.get("Explanation"), required=False))


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
    flat = [item.question, item.answer_text, item.reference_explanation, item.context, item.specialty,
            item.language, *item.options, *item.options.values()]
    try:  # join refuses anything but text: then each field is looked at on its own below
        text = "".join([t for t in flat if t is not None])
        # ASCII text holds no surrogate: only NUL is looked for there (a byte search, not the pattern's scan)
        clean = "\x00" not in text if text.isascii() else _UNSTORABLE.search(text) is None
    except TypeError:
        clean = False
    if clean:
        fields: tuple[tuple[str, Any], ...] = (("metadata", item.metadata),)  # the rest is clean text: one search
    else:
        fields = (("question", item.question), ("options", item.options), ("answer_text", item.answer_text),
                  ("explanation", item.reference_explanation), ("context", item.context),
                  ("specialty", item.specialty), ("language", item.language), ("metadata", item.metadata))
    for where, value in fields:
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


@dataclass(frozen=True)
class ReadOptions:
    """How a file's records become items: the mapping and the flags of `clinreason import`."""

    mapping: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    license: str | None = None
    delimiter: str | None = None  # csv / tsv: None = sniffed (csv) or tab (tsv)
    records: str | None = None  # json: where the records are
    answer_base: int | None = None  # generic layouts: the base of integer answers; None = refuse them
    #: annotation tools: question name -> rubric dimension, `verdict` or `general`
    question_map: dict[str, str] = field(default_factory=dict)
    rubric: Any = None  # annotation tools: the project's Rubric, which scores are checked against


def read_items(path: Path, fmt: str, *, mapping: dict[str, str] | None = None, source: str | None = None,
               license: str | None = None, progress: Progress | None = None, options: ReadOptions | None = None
               ) -> Iterator[tuple[RawRecord, Item] | RecordError]:
    """Stream a file as (raw record, Item) pairs, or RecordError for a record that is not valid."""
    opts = options or ReadOptions(mapping=mapping or {}, source=source, license=license)
    mapping = opts.mapping
    file = display_name(path)
    _check_label("source", opts.source, SOURCE_MAX)
    _check_label("license", opts.license, LICENSE_MAX)
    # a name taken from the file is cut to its column's width; one the user typed is refused above
    src = opts.source or (fmt if fmt in NATIVE_FORMATS + ANNOTATION_FORMATS else Path(file).stem[:SOURCE_MAX])
    lic = opts.license or DEFAULT_LICENSES.get(src) or DEFAULT_LICENSES.get(fmt)
    subject = mmlu_subject(file)[:SUBJECT_MAX] if fmt == "mmlu" else None
    if fmt in ("medqa", "medmcqa", "jsonl", "json", "pubmedqa", "mmlu", "csv", "tsv", "labelstudio") \
            and path.is_file():
        require_utf8(path)

    raw_iter: Iterator[RawRecord | RecordError]
    if fmt in ("medqa", "medmcqa", "jsonl"):
        raw_iter = read_json_lines(path, progress)
    elif fmt == "json":
        raw_iter = read_json_document(path, opts.records, progress)
    elif fmt == "pubmedqa":
        raw_iter = read_pubmedqa(path, progress)
    elif fmt == "mmlu":
        raw_iter = read_csv(path, progress, header=False)
    elif fmt in ("csv", "tsv"):
        delimiter = opts.delimiter or ("\t" if fmt == "tsv" else sniff_delimiter(path))
        raw_iter = read_csv(path, progress, header=True, delimiter=delimiter)
    elif fmt == "cmexam":
        raw_iter = read_xlsx(path)
    elif fmt == "parquet":
        raw_iter = read_parquet(path)
    elif fmt == "hf":
        raw_iter = read_hf(path)
    elif fmt in ANNOTATION_FORMATS:
        raw_iter = _read_annotated(path, fmt, rationale=mapping.get("rationale", "rationale"),
                                   question_map=opts.question_map, rubric=opts.rubric, progress=progress)
    else:
        raise FileFormatError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")

    answer_base = opts.answer_base

    def mapped(rec: RawRecord, f: str) -> Item:
        # a record a clinreason export wrote holds the item exactly, under the default field names
        if not mapping or (rec.annotations is not None and rec.annotations.exact):
            return convert_default(rec, f, answer_base)
        return convert_mapped(rec, f, mapping, answer_base)

    convert: Callable[[RawRecord, str], Item]
    convert = {"medqa": _medqa, "medmcqa": _medmcqa, "pubmedqa": _pubmedqa, "mmlu": _mmlu,
               "cmexam": _cmexam}.get(fmt) or mapped

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


def _read_annotated(path: Path, fmt: str, *, rationale: str, question_map: dict[str, str], rubric: Rubric | None,
                    progress: Progress | None) -> Iterator[RawRecord | RecordError]:
    """An annotation tool's export (argilla, labelstudio), its question map checked against the rubric first."""
    from clinreason.stages.ingest_annotated import check_question_map

    rubric = rubric or default_rubric()
    check_question_map(question_map, rubric, display_name(path))
    if fmt == "argilla":
        from clinreason.stages.ingest_argilla import read_argilla

        yield from read_argilla(path, rationale=rationale, question_map=question_map, rubric=rubric)
    else:
        from clinreason.stages.ingest_labelstudio import read_labelstudio

        yield from read_labelstudio(path, rationale=rationale, question_map=question_map, rubric=rubric,
                                    progress=progress)
