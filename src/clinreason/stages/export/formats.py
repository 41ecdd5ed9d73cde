"""How an export row is encoded on disk: JSON Lines, Parquet (typed, in row groups), a Hugging Face
`datasets` folder (save_to_disk), chat-format SFT records, DPO preference pairs and PRM step labels (one
record per reviewed version); the annotation tools' layouts (Argilla, Label Studio) are annotation.py's.
Used by the export stage (`stage.py`); pyarrow and datasets are imported only when those formats are
asked for.

A sink receives rows split by split, in item-id order, and writes them as they come; `close()` returns
the names it wrote inside the export folder.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from clinreason.domain.rubric import default_rubric, rubric_from_dict
from clinreason.stages.export.annotation import ArgillaSink, LabelStudioSink
from clinreason.stages.export.common import SYSTEM_PROMPTS, ExportError, safe_path

ROW_GROUP = 5000
ROLES = ("system", "user", "assistant")


#: orjson's options for a line: the newline appended, non-string keys written as strings (as json.dumps does)
_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def dumps(record: dict[str, Any]) -> bytes:
    """One JSON line in UTF-8: keys in the order the row was built, text as is (no \\u escapes but those
    JSON requires), no spaces. orjson, not the stdlib: encoding is most of a jsonl export's time, and orjson
    takes about a fifth of json's (`benchmarks/bench_export.py`). Numbers read back the same; the shortest
    form differs from json.dumps only in small floats' exponents (1e-7, not 1e-07)."""
    return orjson.dumps(record, option=_LINE)


# --- chat formats -----------------------------------------------------------------------------------

def _system(language: str) -> str:
    return SYSTEM_PROMPTS["zh" if language.lower().startswith("zh") else "en"]


def user_prompt(row: dict[str, Any]) -> str:
    zh = row["language"].lower().startswith("zh")
    parts = []
    if row.get("context"):
        parts.append(row["context"].strip())
    parts.append(row["question"].strip())
    if row["options"]:
        parts.append(("选项：" if zh else "Options:") + "\n" + "\n".join(f"{o['label']}. {o['text']}"
                                                                        for o in row["options"]))
    return "\n\n".join(parts)


def answer_line(row: dict[str, Any], final: list[str]) -> str:
    zh = row["language"].lower().startswith("zh")
    texts = {o["label"]: o["text"] for o in row["options"]}
    if len(final) == 1 and final[0] in texts:
        shown = f"{final[0]}. {texts[final[0]]}"
    else:
        shown = ", ".join(final) if final else (row.get("answer_text") or "")
    return ("答案：" if zh else "Answer: ") + shown


def assistant_reply(row: dict[str, Any], steps: list[str] | None, text: str, final: list[str]) -> str:
    """The rationale as reasoning (numbered steps, or the text when it has none), then the answer."""
    if steps:
        reasoning = "\n".join(f"{i}. {s.strip()}" for i, s in enumerate(steps, 1))
    else:
        reasoning = text.strip()
    return f"{reasoning}\n\n{answer_line(row, final)}"


def prompt_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "system", "content": _system(row["language"])}, {"role": "user", "content": user_prompt(row)}]


def sft_record(row: dict[str, Any]) -> dict[str, Any]:
    reply = assistant_reply(row, row["rationale"]["steps"], row["rationale"]["text"], row["final_answer"])
    return {"id": row["id"], "messages": prompt_messages(row) + [{"role": "assistant", "content": reply}]}


def validate_sft_record(record: Any) -> None:
    """The schema SFT tools (TRL, axolotl, LLaMA-Factory "messages" layout) expect; raises ValueError."""
    if not isinstance(record, dict) or set(record) != {"id", "messages"}:
        raise ValueError("an SFT record is an object with exactly the keys 'id' and 'messages'")
    if not isinstance(record["id"], str) or not record["id"]:
        raise ValueError("id: expected a non-empty string")
    messages = record["messages"]
    if not isinstance(messages, list) or [m.get("role") if isinstance(m, dict) else None for m in messages] \
            != list(ROLES):
        raise ValueError("messages: expected [system, user, assistant] turns, in that order")
    for i, m in enumerate(messages):
        if set(m) != {"role", "content"}:
            raise ValueError(f"messages[{i}]: expected exactly the keys 'role' and 'content'")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise ValueError(f"messages[{i}].content: expected non-empty text")


def dpo_records(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Rejected draft vs accepted version of the same item: one pair per version experts reviewed and did
    not accept (whose text differs from the accepted one), in version order."""
    history = row.get("history") or []
    accepted = next((h for h in history if h["accepted"]), None)
    if accepted is None:
        return []
    chosen = assistant_reply(row, row["rationale"]["steps"], row["rationale"]["text"], row["final_answer"])
    pairs = []
    for h in history:
        if h["accepted"] or not h["reviews"] or h["text"] is None or h["text"].strip() == accepted["text"].strip():
            continue
        rejected = assistant_reply(row, h["steps"], h["text"], h["final_answer"] or [])
        pairs.append({
            "id": f"{row['id']}:v{h['version']}>v{accepted['version']}",
            "item_id": row["id"],
            "prompt": prompt_messages(row),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "chosen_version": accepted["version"],
            "rejected_version": h["version"],
            "rejected_origin": h["origin"],
            "rejected_verdicts": sorted(r["verdict"] for r in h["reviews"]),
            "rejected_error_steps": error_steps(h),
        })
    return pairs


# --- process labels (PRM) -----------------------------------------------------------------------------

def error_steps(version: dict[str, Any]) -> list[int]:
    """The step numbers (1-based, of this version) any reviewer marked `error`, ascending."""
    return sorted({m["step"] for r in version["reviews"] for m in r["steps"] if m["verdict"] == "error"})


def prm_records(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per reviewed version of the item, in version order: its steps, each labelled `error` (a
    reviewer marked it so), `ok` (marked ok, or left unmarked in the version a decision accepted) or None
    (nobody judged it), with the error marks (category, severity, note) the reviewers gave it."""
    out = []
    for h in row.get("history") or []:
        if not h["reviews"]:
            continue
        steps = h["steps"] or []
        judged: dict[int, list[dict[str, Any]]] = {}
        for r in h["reviews"]:
            for k, m in enumerate(r["steps"]):
                if not 1 <= m["step"] <= len(steps):
                    raise ExportError(f"item {row['id']}, version {h['version']}: a review by {r['reviewer']} "
                                      f"marks step {m['step']} (reviews.steps[{k}].step) but the version has "
                                      f"{len(steps)} step(s); fix or remove that mark before exporting")
                judged.setdefault(m["step"], []).append(m)
        labelled = []
        for n, text in enumerate(steps, 1):
            marks = judged.get(n, [])
            errors = [m for m in marks if m["verdict"] == "error"]
            label = "error" if errors else "ok" if marks or h["accepted"] else None
            labelled.append({"text": text, "label": label,
                             "marks": [{"category": m["category"], "severity": m["severity"], "note": m["note"]}
                                       for m in errors]})
        out.append({"item_id": row["id"], "version": h["version"], "prompt": user_prompt(row), "steps": labelled,
                    "final_answer": h["final_answer"] or [], "accepted": h["accepted"]})
    return out


class PrmEncoder:
    """`prm_records`, counting the labels it wrote (`labels`: "ok" | "error" | "unknown" -> steps)."""

    def __init__(self, labels: Counter):
        self.labels = labels

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        records = prm_records(row)
        for record in records:
            self.labels.update(s["label"] or "unknown" for s in record["steps"])
        return records


# --- Arrow schema -----------------------------------------------------------------------------------

def arrow_schema(dims: list[str], with_history: bool):
    import pyarrow as pa

    s = pa.string()
    mark = pa.struct([("step", pa.int64()), ("verdict", s), ("category", s), ("severity", s), ("note", s),
                      ("correction", s)])
    review = pa.struct([("reviewer", s), ("verdict", s), ("scores", pa.struct([(d, pa.int64()) for d in dims])),
                        ("steps", pa.list_(mark))])
    fields = [
        ("id", s), ("question", s), ("context", s),
        ("options", pa.list_(pa.struct([("label", s), ("text", s)]))),
        ("answer", pa.list_(s)), ("answer_text", s), ("language", s), ("specialty", s),
        ("rationale", pa.struct([("steps", pa.list_(s)), ("text", s)])),
        ("final_answer", pa.list_(s)),
        ("scores", pa.struct([("mean", pa.struct([(d, pa.float64()) for d in dims])),
                              ("reviews", pa.list_(review))])),
        ("consensus", s), ("accepted_as", s), ("rounds", pa.int64()), ("accepted_version", pa.int64()),
        ("provenance", pa.struct([("origin", s), ("author", s), ("model", s), ("prompt_hash", s), ("params", s),
                                  ("seed", pa.int64())])),
        ("source", s), ("license", s),
        ("sources", pa.list_(pa.struct([("source", s), ("subject", s), ("license", s)]))),
    ]
    if with_history:
        fields.append(("history", pa.list_(pa.struct([
            ("version", pa.int64()), ("origin", s), ("author", s), ("model", s), ("prompt_hash", s), ("text", s),
            ("steps", pa.list_(s)), ("final_answer", pa.list_(s)), ("accepted", pa.bool_()),
            ("reviews", pa.list_(review))]))))
    return pa.schema(fields)


# --- sinks ------------------------------------------------------------------------------------------

class JsonlSink:
    def __init__(self, out: Path, names: tuple[str, ...], encode):
        self.encode = encode
        self.names = [f"{n}.jsonl" for n in names]
        self.files = {n: safe_path(out, f"{n}.jsonl").open("wb") for n in names}

    def write(self, split: str, row: dict[str, Any]) -> int:
        records = self.encode(row)
        if len(records) == 1:
            self.files[split].write(dumps(records[0]))
        else:
            self.files[split].writelines(dumps(r) for r in records)
        return len(records)

    def close(self) -> list[str]:
        for f in self.files.values():
            f.close()
        return self.names


class ParquetSink:
    """One file per split, written in row groups of ROW_GROUP rows as they arrive."""

    def __init__(self, folder: Path, names: tuple[str, ...], dims: list[str], with_history: bool,
                 suffix: str = ".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = arrow_schema(dims, with_history)
        self.row_type = pa.struct(list(self.schema))
        self.with_history = with_history
        self.paths = {n: safe_path(folder, f"{n}{suffix}") for n in names}
        self.writers = {n: pq.ParquetWriter(str(p), self.schema, compression="zstd") for n, p in self.paths.items()}
        self.buffers: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        self.followers: list[ParquetSink] = []  # sinks of the same schema fed the tables this one converts

    def feed(self, other: ParquetSink) -> bool:
        """Hand `other` (an hf sink of the same rows and schema) every table this sink converts, so that an
        export of both formats turns each row group into Arrow once. Then `other` is not written rows, and
        closes after this sink. False where the schemas differ (nothing is shared)."""
        if other.schema != self.schema:
            return False
        self.followers.append(other)
        return True

    def write(self, split: str, row: dict[str, Any]) -> int:
        if not self.with_history and "history" in row:
            row = {k: v for k, v in row.items() if k != "history"}
        buf = self.buffers[split]
        buf.append(row)
        if len(buf) >= ROW_GROUP:
            self._flush(split)
        return 1

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        if self.buffers[split]:  # (one struct array converted at once: what Table.from_pylist builds, sooner)
            rows = pa.array(self.buffers[split], type=self.row_type)
            table = pa.Table.from_struct_array(rows)
            self._write_table(split, table)
            for other in self.followers:
                other._write_table(split, table)
            self.buffers[split] = []

    def _write_table(self, split: str, table: Any) -> None:
        self.writers[split].write_table(table)

    def close(self) -> list[str]:
        for split, writer in self.writers.items():
            self._flush(split)
            writer.close()
        return [p.name for p in self.paths.values()]


class HFSink(ParquetSink):
    """Arrow record batches streamed into a scratch folder (one IPC stream per split, in the features' own
    schema), then a `datasets` folder (save_to_disk) with typed features."""

    def __init__(self, out: Path, tmp: Path, names: tuple[str, ...], dims: list[str], with_history: bool):
        import datasets
        import pyarrow as pa

        self.out, self.tmp, self.split_names = out, tmp, names
        self.schema = arrow_schema(dims, with_history)
        self.row_type = pa.struct(list(self.schema))
        self.with_history = with_history
        self.features = datasets.Features.from_arrow_schema(self.schema)
        self.paths = {n: safe_path(tmp, f"{n}.arrow") for n in names}
        self.files = {n: pa.OSFile(str(p), "wb") for n, p in self.paths.items()}
        self.arrow_schema = self.features.arrow_schema  # a property datasets computes afresh on each read
        self.writers = {n: pa.ipc.new_stream(self.files[n], self.arrow_schema) for n in names}
        self.buffers = {n: [] for n in names}
        self.followers = []

    def _write_table(self, split: str, table: Any) -> None:
        self.writers[split].write_table(table.cast(self.arrow_schema))

    def close(self) -> list[str]:
        import datasets

        for split, writer in self.writers.items():
            self._flush(split)
            writer.close()
            self.files[split].close()
        features = self.features
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            loaded = {}
            for name, arrow in self.paths.items():
                loaded[name] = datasets.Dataset.from_file(str(arrow), info=datasets.DatasetInfo(features=features))
            _drop_links(self.out, ["state.json", "dataset_info.json", "dataset_dict.json", *self.split_names,
                                   *(p.name for p in self.out.glob("data-*.arrow"))])
            before = {p.name for p in self.out.iterdir()}
            # an empty split still needs one (empty) shard, or load_from_disk cannot read it back
            shards = {name: 1 for name, ds in loaded.items() if len(ds) == 0}
            if self.split_names == ("data",):
                loaded["data"].save_to_disk(str(self.out), num_shards=shards.get("data"))
                _stable_fingerprint(self.out)
            else:
                datasets.DatasetDict(loaded).save_to_disk(str(self.out), num_shards=shards)
                for name in self.split_names:
                    _stable_fingerprint(self.out / name)
            written = sorted({p.name for p in self.out.iterdir()} - before)
        finally:
            if bars:
                datasets.enable_progress_bars()
        return written


def _drop_links(folder: Path, names: list[str]) -> None:
    """save_to_disk opens its files by name and would write through a link planted there (to a file or to
    a split folder outside the export): remove such links first, never following them."""
    for name in names:
        path = folder / name
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            for inner in path.iterdir():
                if inner.is_symlink():
                    inner.unlink()


def _stable_fingerprint(folder: Path) -> None:
    """save_to_disk records a fingerprint derived from scratch paths; make it a hash of the data instead,
    so that two exports of the same database are byte-identical."""
    state_path = folder / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for entry in state.get("_data_files", []):
        with (folder / entry["filename"]).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    state["_fingerprint"] = digest.hexdigest()[:16]
    state_path.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")


def open_sink(fmt: str, out: Path, tmp: Path, names: tuple[str, ...], dims: list[str], opts,
              step_labels: Counter | None = None, rubric_body: dict[str, Any] | None = None, project: str = ""):
    """The sink of `fmt`; prm counts the step labels it writes into `step_labels`; the annotation tools'
    settings are built from the rubric."""
    if fmt in ("argilla", "labelstudio"):
        rubric = rubric_from_dict(rubric_body) if rubric_body else default_rubric()
        sink_class = ArgillaSink if fmt == "argilla" else LabelStudioSink
        return sink_class(out, rubric, project=project)
    if fmt == "jsonl":
        strip = not opts.with_history
        return JsonlSink(out, names, lambda row: [{k: v for k, v in row.items() if k != "history"}
                                                  if strip and "history" in row else row])
    if fmt == "sft":
        return JsonlSink(out, names, lambda row: [sft_record(row)])
    if fmt == "dpo":
        return JsonlSink(out, names, dpo_records)
    if fmt == "prm":
        return JsonlSink(out, names, PrmEncoder(Counter() if step_labels is None else step_labels))
    if fmt == "parquet":
        return ParquetSink(out, names, dims, opts.with_history)
    if fmt == "hf":
        return HFSink(out, tmp, names, dims, opts.with_history)
    raise ValueError(f"unknown format {fmt!r}")
