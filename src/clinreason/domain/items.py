"""Items (questions) and how their stable ids are computed.

An item's id is a hash of its normalised content (stem, options, gold answer), so importing the same
question twice - from the same file or from two files - yields the same id and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def normalise_text(text: str) -> str:
    """Unicode NFC, whitespace runs collapsed to one space, ends trimmed. Case is kept."""
    # str.split() splits on exactly the characters `\s` matches (str.isspace), so this is the regex's
    # collapse-and-trim, at a third of its cost
    # an ASCII string is already NFC (str.isascii is a flag lookup, no scan)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    # a printable text holds no whitespace but " " (every other str.isspace character is unprintable):
    # with no run of two and none at either end it is its own normal form (one C scan instead of a split)
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(text.split())


def detect_language(text: str) -> str:
    """'zh' when CJK characters outnumber a fifth of the Latin letters, else 'en'."""
    if text.isascii():
        return "en"  # no CJK character: the rule below says 'en' whatever the Latin count
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 5 >= latin else "en"


#: the hashed form of an item's content (json.dumps with these arguments, built once instead of per call)
_HASH_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
#: the string encoder that JSON encoder applies to every str (ensure_ascii=False)
_JSON_STR = json.encoder.encode_basestring


def content_hash(question: str, options: dict[str, str], answer_labels: list[str], answer_text: str | None) -> str:
    """SHA-256 of the normalised content; the same question always hashes the same.

    The hashed text is `_HASH_JSON({"q": ..., "o": [[k, v], ...], "a": sorted(labels), "t": ... or None})`.
    For the usual shape (str labels) it is written directly, keys in sorted order, with the encoder's own
    string function: the same bytes at a fraction of the generic encoder's cost."""
    opts = _normal_options(options)
    labels = sorted(answer_labels)
    if all(type(label) is str for label in labels):
        return _hashed(labels, _options_text(opts), question, answer_text)
    text = normalise_text(answer_text) if answer_text else None
    blob = _HASH_JSON({"q": normalise_text(question), "o": [list(kv) for kv in opts], "a": labels, "t": text})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def content_hash_with_options(question: str, options: dict[str, str], answer_labels: list[str],
                              answer_text: str | None) -> tuple[str, str | None]:
    """(`content_hash(...)`, the options as the JSON text `[[label, text], ...]` written compactly, each
    string as the hashing encoder writes it (None when a label or text is not a str)). Options already in
    normal form (the usual case) are the very text the hashed JSON holds under "o": quoted once for both."""
    pairs = list(options.items())
    if not all(type(k) is str and type(v) is str for k, v in pairs):
        return content_hash(question, options, answer_labels, answer_text), None
    stored = _options_text(pairs)
    labels = sorted(answer_labels)
    if not all(type(label) is str for label in labels):
        return content_hash(question, options, answer_labels, answer_text), stored
    opts = _normal_options(options)
    return _hashed(labels, stored if opts == pairs else _options_text(opts), question, answer_text), stored


def _normal_options(options: dict[str, str]) -> list[tuple[str, str]]:
    # a label like "A" (ASCII letters and digits only) is its own normal form: no call for it
    norm = normalise_text
    return [(k if k.isalnum() and k.isascii() else norm(k), norm(v)) for k, v in options.items()]


def _options_text(pairs: list[tuple[str, str]]) -> str:
    """`[[label, text], ...]` as the hashing encoder writes it (str labels and texts)."""
    enc = _JSON_STR
    return "[" + ",".join(["[" + enc(k) + "," + enc(v) + "]" for k, v in pairs]) + "]"


def _hashed(labels: list[str], options_text: str, question: str, answer_text: str | None) -> str:
    """SHA-256 of `_HASH_JSON` of the content, written directly (keys in sorted order): `labels` sorted str,
    `options_text` the normalised options as `_options_text` writes them."""
    enc = _JSON_STR
    text = normalise_text(answer_text) if answer_text else None
    blob = "".join(('{"a":[', ",".join(map(enc, labels)), '],"o":', options_text, ',"q":', enc(normalise_text(question)),
                    ',"t":', "null" if text is None else enc(text), "}"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def item_id(project: str, digest: str) -> str:
    """Public id of an item inside a project: stable across databases for the same project name."""
    if project == "default":
        return digest[:20]
    return hashlib.sha256(f"{project}\x00{digest}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where one copy of an item came from."""

    source: str  # e.g. "medqa", "mmlu"
    file: str  # file name (not the full path: the same file moved elsewhere is the same source)
    record: str  # record locator inside the file (line number, row, PMID ...)
    subject: str | None = None
    license: str | None = None


@dataclass(slots=True)
class Item:
    """One question. `answer_labels` is a set of labels: multi-answer exam questions exist."""

    question: str
    options: dict[str, str]
    answer_labels: list[str]
    answer_text: str | None = None
    language: str = "en"
    specialty: str | None = None
    context: str | None = None
    reference_explanation: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sources: list[SourceRef] = field(default_factory=list)
    id: str = ""
    content_hash: str = ""
    state: str = "imported"

    @property
    def has_gold_answer(self) -> bool:
        return bool(self.answer_labels) or bool(self.answer_text)

    def compute_hash(self) -> str:
        return content_hash(self.question, self.options, self.answer_labels, self.answer_text)
