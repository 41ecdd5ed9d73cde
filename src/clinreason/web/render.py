"""Turning untrusted text into safe HTML, and versions into diffs.

LLM output and imported text are untrusted. Markdown is rendered with raw HTML disabled (so `<script>`
stays text), then the HTML is cleaned by nh3 (ammonia) with an allow-list: no scripts, no event-handler
attributes, no images, links only to http(s)/mailto. Templates autoescape everything else.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "s", "sub", "sup",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False, "breaks": True}).enable(["table", "strikethrough"])


def sanitize_html(html: str) -> str:
    import nh3

    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=ALLOWED_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def render_markdown(text: str | None) -> Markup:
    """Markdown -> sanitised HTML, safe to insert into a page. A line break is a line break (rationales
    are written one step per line)."""
    return Markup(sanitize_html(_markdown().render(text or "")))


# --- diffs ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    changed: bool


@dataclass(frozen=True, slots=True)
class DiffRow:
    kind: str  # equal | replace | delete | insert
    left_no: int | None
    left: tuple[Segment, ...]
    right_no: int | None
    right: tuple[Segment, ...]


_TOKEN = re.compile(r"\s+|[\w\u3400-\u9fff]+|[^\w\s]", re.UNICODE)


def _words(old: str, new: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i2 > i1:
            left.append(Segment("".join(a[i1:i2]), tag != "equal"))
        if j2 > j1:
            right.append(Segment("".join(b[j1:j2]), tag != "equal"))
    return tuple(left), tuple(right)


def side_by_side(old: str | None, new: str | None) -> list[DiffRow]:
    """Line-by-line rows for a two-column diff; changed lines carry word-level highlights."""
    a = (old or "").replace("\r\n", "\n").split("\n")
    b = (new or "").replace("\r\n", "\n").split("\n")
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(DiffRow("equal", i + 1, (Segment(a[i], False),), j + 1, (Segment(b[j], False),))
                        for i, j in zip(range(i1, i2), range(j1, j2)))
            continue
        n = max(i2 - i1, j2 - j1)
        for k in range(n):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            if has_left and has_right:
                left, right = _words(a[i], b[j])
                rows.append(DiffRow("replace", i + 1, left, j + 1, right))
            elif has_left:
                rows.append(DiffRow("delete", i + 1, (Segment(a[i], True),), None, ()))
            else:
                rows.append(DiffRow("insert", None, (), j + 1, (Segment(b[j], True),)))
    return rows


def diff_stats(rows: list[DiffRow]) -> dict[str, int]:
    return {"changed": sum(r.kind == "replace" for r in rows), "removed": sum(r.kind == "delete" for r in rows),
            "added": sum(r.kind == "insert" for r in rows)}
