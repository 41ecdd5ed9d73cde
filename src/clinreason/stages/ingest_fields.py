"""What the converters of question-bank records share: reading a text field, options in any of their
shapes (a mapping, a list, a labelled text block), the gold answer as a set of labels, and turning any value
into JSON-safe metadata. Every refusal is a RecordError naming the field and what was expected. Nothing
here touches the database.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from typing import Any

from clinreason.domain.items import normalise_text
from clinreason.stages.ingest_readers import DupDict, RawRecord, RecordError

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OPTION_LINE = re.compile(r"^\s*([A-Z])\s*[\.\)、:：．]?\s*(.*)$", re.S)
_NO_ANSWER = {"", "nan", "none", "null", "n/a"}


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _NO_ANSWER


def text_value(rec: RawRecord, file: str, field: str, value: Any, *, required: bool = True) -> str | None:
    if type(value) is str and value.strip().lower() not in _NO_ANSWER:  # the usual case: a text (is_missing's test)
        return value
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(file, rec.number, field, "a non-empty text", value, rec.locator)
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RecordError(file, rec.number, field, "a text", value, rec.locator)
    return value


def stem_value(rec: RawRecord, file: str, field: str, value: Any) -> str:
    """A required text field (the question): an error naming the record when it is empty."""
    text = text_value(rec, file, field, value)
    assert text is not None  # required: text_value raised otherwise
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


def options_value(rec: RawRecord, file: str, field: str, value: Any) -> dict[str, str]:
    """Options from a mapping, a list (labelled A, B, ...) or a labelled text block."""
    pairs: list[tuple[str, str]]
    if isinstance(value, PairList):
        pairs = list(value)
    elif isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        if len(value) > len(LABELS):
            raise RecordError(file, rec.number, field, f"at most {len(LABELS)} options", len(value), rec.locator)
        pairs = [(LABELS[i], v) for i, v in enumerate(value)]
    elif isinstance(value, str):
        try:
            pairs = parse_option_block(value)
        except ValueError as exc:
            raise RecordError(file, rec.number, field, "lines like 'A text' separated by \\n", str(exc), rec.locator) from None
    elif is_missing(value):
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
        if isinstance(text, (int, float)) and not isinstance(text, bool) and not is_missing(text):
            text = str(text)
        if not isinstance(text, str) or not text.strip():
            raise RecordError(file, rec.number, f"{field}.{label}", "a non-empty option text", text, rec.locator)
        options[label] = text
    if len(options) == 1:
        raise RecordError(file, rec.number, field, "at least two options", len(options), rec.locator)
    return options


class PairList(list):
    """Options as (label, text) pairs, kept as pairs so duplicate labels are still visible."""



def answer_labels(rec: RawRecord, file: str, field: str, value: Any, options: dict[str, str],
                   *, index_base: int = 0) -> list[str]:
    """Gold answer as a set of labels. Accepts 'A', 'ABCD', 'A,C', ['A', 'C'], an option's text, or an
    integer index (0-based unless the format says otherwise). Missing -> [] (no gold answer)."""
    if is_missing(value):
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


def plain(value: Any) -> Any:
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
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
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
            return plain(value.item())
        except (AttributeError, ValueError, TypeError):
            return str(value)
    if hasattr(value, "tolist"):  # numpy arrays
        return plain(value.tolist())
    return str(value)


def as_pairs(obj: dict[str, Any]) -> PairList:
    return PairList(obj.pairs if isinstance(obj, DupDict) else obj.items())


