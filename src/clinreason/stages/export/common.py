"""What the export stage, its writers and its card share: the format names, the options, the error a
person can fix, the system prompts of the chat formats and writing a file inside the export folder.

A leaf: it imports nothing else of the export package, so `stage`, `formats` and `card` can all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMATS = ("jsonl", "parquet", "hf", "sft", "dpo", "prm", "argilla", "labelstudio")
#: annotation tools: one record per version of each item, its reviews as the tool's responses (annotation.py)
ANNOTATION_FORMATS = ("argilla", "labelstudio")
#: the formats whose rows carry every version of the item (with its reviews), not only the accepted one
HISTORY_FORMATS = ("dpo", "prm", *ANNOTATION_FORMATS)
SPLIT_NAMES = {1: ("train",), 2: ("train", "test"), 3: ("train", "validation", "test")}
MANIFEST = ".clinreason-export.json"
SYSTEM_PROMPTS = {
    "en": "You are a medical expert. Reason step by step through the clinical question, then give the final answer.",
    "zh": "你是一名医学专家。请逐步推理这道临床题目，然后给出最终答案。",
}


class ExportError(ValueError):
    """A problem the person running the export can fix (bad option, occupied folder)."""


@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "jsonl"
    splits: tuple[float, ...] | None = None
    min_score: float | None = None
    consensus: str | None = None
    source: str | None = None
    with_history: bool = False
    force: bool = False
    chunk_size: int = 1000


def safe_path(out: Path, name: str) -> Path:
    """A file inside OUT; an existing link there is removed, never followed."""
    path = out / name
    if path.resolve().parent != out.resolve() and not path.is_symlink():
        raise ExportError(f"refusing to write {name!r} outside {out}")
    if path.is_symlink() or path.is_file():
        path.unlink()
    return path
