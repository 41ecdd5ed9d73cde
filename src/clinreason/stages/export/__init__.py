"""The export stage: accepted items -> a dataset folder (jsonl | parquet | hf | sft | dpo | prm) with its card.

    common.py  what the others share (formats, options, ExportError, SYSTEM_PROMPTS, safe_path) — a leaf
    formats.py how a row is written: JSON Lines, Parquet, a Hugging Face folder, SFT, DPO and PRM records
    card.py    the dataset card (README.md) written into every export
    rows.py    reading the accepted items from the database into export rows
    stage.py   splits, the folder, and `run_export` / `run_exports` (several formats from one read)

The names the rest of the code uses are re-exported here: `from clinreason.stages.export import run_export`.
"""

from clinreason.stages.export.common import (
    FORMATS,
    MANIFEST,
    SPLIT_NAMES,
    SYSTEM_PROMPTS,
    ExportError,
    ExportOptions,
    safe_path,
)
from clinreason.stages.export.stage import (
    ExportSummary,
    Splitter,
    id_hash,
    parse_formats,
    parse_splits,
    prepare_folder,
    run_export,
    run_exports,
    split_names,
)

__all__ = [
    "FORMATS", "MANIFEST", "SPLIT_NAMES", "SYSTEM_PROMPTS", "ExportError", "ExportOptions", "ExportSummary",
    "Splitter", "id_hash", "parse_formats", "parse_splits", "prepare_folder", "run_export", "run_exports", "safe_path",
    "split_names",
]
