"""Question banks shipped as one JSON document, and cells that hold structures.

`--format json` reads the whole file as one document; `--records PATH` says where its records are:
dot-separated keys, `*` for every key (or index) at that level, a number for one index —
`sections.*.questions` reads every question list of every section. The path names the records
themselves or the lists that hold them. Without `--records` the document must be a list of records.
A record keeps the objects that enclose it (nearest first) and the keys its `*`s matched, so that a
mapping can read them: `--map specialty=^name` (the nearest enclosing object's `name`), `--map
specialty=^*` (the key the last `*` matched).

`parse_structure` turns a cell that holds a list or a mapping as text — JSON, or a Python literal such
as `['Aspirin', 'Heparin']` — into that structure, with `ast.literal_eval` (never `eval`). Nothing here
touches the database.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Iterator

from clinreason.stages.ingest_readers import (
    DupDict,
    FileFormatError,
    Progress,
    RawRecord,
    RecordError,
    display_name,
    pairs_hook,
)

#: a cell longer than this is never parsed as a structure (it is read as text)
STRUCTURE_MAX_CHARS = 1 << 20


def parse_structure(value: Any) -> Any:
    """A text cell holding a list or a mapping -> that list (tuples become lists) or mapping (a DupDict when
    a key repeats, so duplicate option labels stay visible); anything else comes back unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or text[0] not in "[{(" or len(text) > STRUCTURE_MAX_CHARS:
        return value
    try:
        parsed = json.loads(text, object_pairs_hook=pairs_hook)
        return parsed if isinstance(parsed, (list, dict)) else value
    except (ValueError, RecursionError):
        pass
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return value
    try:
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):  # a ** spread: not a literal
                return value
            pairs = [(ast.literal_eval(k), ast.literal_eval(v)) for k, v in zip(node.keys, node.values)]  # type: ignore[arg-type]
            keys = [k for k, _ in pairs]
            return DupDict(pairs) if len(set(keys)) != len(keys) else dict(pairs)
        if isinstance(node, (ast.List, ast.Tuple)):
            return _lists(ast.literal_eval(node))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return value
    return value


def _lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


# --- the records path -----------------------------------------------------------------------------

def parse_records_path(spec: str | None, file: str = "") -> list[str]:
    """`--records 'sections.*.questions'` -> ['sections', '*', 'questions']; empty parts are refused."""
    if spec is None or spec.strip() in ("", "."):
        return []
    parts = spec.strip().split(".")
    if any(not p for p in parts):
        raise FileFormatError(f"{file + ': ' if file else ''}--records {spec!r}: expected dot-separated keys such as "
                              "'sections.*.questions'")
    return parts


def _where(path: list[str]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() and out else (f".{part}" if out else part)
    return out or "(the document)"


def walk_records(doc: Any, parts: list[str], file: str, spec: str
                 ) -> Iterator[tuple[str, Any, tuple[dict[str, Any], ...], tuple[str, ...]]]:
    """(locator, record, enclosing objects nearest first, keys the `*`s matched) for every record the path
    reaches, in document order. A key the document does not have refuses the file, naming where."""

    def visit(node: Any, i: int, path: list[str], parents: tuple[dict[str, Any], ...], matched: tuple[str, ...]):
        if i == len(parts):
            if isinstance(node, list):
                for k, element in enumerate(node):
                    yield f"{_where(path)}[{k}]", element, parents, matched
            else:
                yield _where(path), node, parents, matched
            return
        part = parts[i]
        inner = (node, *parents) if isinstance(node, dict) else parents
        if part == "*":
            if isinstance(node, dict):
                for key, value in node.items():
                    yield from visit(value, i + 1, [*path, str(key)], inner, (*matched, str(key)))
            elif isinstance(node, list):
                for k, value in enumerate(node):
                    yield from visit(value, i + 1, [*path, str(k)], inner, (*matched, str(k)))
            else:
                raise FileFormatError(f"{file}: --records {spec!r}: {_where(path)} is {_kind(node)}, so '*' has "
                                      "nothing to go through")
            return
        if isinstance(node, dict):
            if part not in node:
                keys = ", ".join(list(map(str, node))[:12]) or "none"
                raise FileFormatError(f"{file}: --records {spec!r}: {_where(path)} has no key '{part}' "
                                      f"(its keys: {keys})")
            yield from visit(node[part], i + 1, [*path, part], inner, matched)
        elif isinstance(node, list) and part.isdigit():
            if int(part) >= len(node):
                raise FileFormatError(f"{file}: --records {spec!r}: {_where(path)} has {len(node)} elements, "
                                      f"no index {part}")
            yield from visit(node[int(part)], i + 1, [*path, part], inner, matched)
        else:
            raise FileFormatError(f"{file}: --records {spec!r}: {_where(path)} is {_kind(node)}, not an object "
                                  f"with a key '{part}'")

    yield from visit(doc, 0, [], (), ())


def _kind(node: Any) -> str:
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, list):
        return "a list"
    return f"a {type(node).__name__} value" if node is not None else "null"


def suggest_records_paths(doc: Any, limit: int = 3) -> list[str]:
    """Paths to lists of objects inside `doc` (a level whose keys vary shown as `*`), for the refusal of
    a document that is not a list of records."""
    found: list[tuple[str, ...]] = []

    def visit(node: Any, path: tuple[str, ...], depth: int) -> None:
        if len(found) >= 200 or depth > 6:
            return
        if isinstance(node, list):
            if path and node and all(isinstance(e, dict) for e in node[:20]):
                found.append(path)
            return
        if isinstance(node, dict):
            for key, value in list(node.items())[:200]:
                visit(value, (*path, str(key)), depth + 1)

    visit(doc, (), 0)
    general: list[str] = []
    for path in found:
        shown = list(path)
        for i in range(len(path)):
            if any(len(o) == len(path) and o[i] != path[i] and o[:i] == path[:i] and o[i + 1:] == path[i + 1:]
                   for o in found):
                shown[i] = "*"
        text = ".".join(shown)
        if text not in general:
            general.append(text)
    return general[:limit]


def read_json_document(path: Path, records: str | None, progress: Progress | None
                       ) -> Iterator[RawRecord | RecordError]:
    """The records of one JSON document, found with `--records` (see the module docstring)."""
    file = display_name(path)
    parts = parse_records_path(records, file)
    try:
        raw = path.read_bytes()
        if progress:
            progress(len(raw))
        doc = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=pairs_hook)
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{file}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                              "re-save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        hint = " (one JSON record per line is --format jsonl)" if exc.msg == "Extra data" else ""
        raise FileFormatError(f"{file}: not one JSON document: line {exc.lineno} column {exc.colno}: "
                              f"{exc.msg}{hint}") from None
    except RecursionError:
        raise FileFormatError(f"{file}: JSON nested too deeply to read") from None
    if not parts and not isinstance(doc, list):
        if isinstance(doc, dict):
            found = suggest_records_paths(doc)
            hint = f" (lists of objects found at: {', '.join(found)})" if found else ""
            raise FileFormatError(f"{file}: the document is one object, not a list of records: say where the "
                                  f"records are with --records, e.g. --records 'sections.*.questions'{hint}")
        raise FileFormatError(f"{file}: expected a list of records or an object holding them, got {_kind(doc)}")
    for number, (locator, record, parents, matched) in enumerate(walk_records(doc, parts, file, records or ""), 1):
        if not isinstance(record, dict):
            yield RecordError(file, number, "(record)", "a JSON object", _kind(record), locator)
            continue
        yield RawRecord(number, locator, record, parents=parents, matched=matched)


def enclosing_value(rec: RawRecord, name: str) -> tuple[bool, Any]:
    """What `--map field=^name` reads: (found, value) — `^*` is the key the last `*` matched, `^name`
    the `name` of the nearest enclosing object that has one."""
    key = name[1:]
    if key == "*":
        return (True, rec.matched[-1]) if rec.matched else (False, None)
    for parent in rec.parents:
        if key in parent:
            return True, parent[key]
    return False, None
