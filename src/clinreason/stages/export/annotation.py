"""Exports for annotation tools, written with the standard library alone (no vendor SDK):

    argilla      the folder Argilla 2.x `Dataset.to_disk` writes (and `rg.Dataset.from_disk` reads):
                 .argilla/settings.json — fields question, context, options, answer and the rationale (markdown);
                 one rating question per rubric dimension on the rubric's scale, one text question per
                 dimension (`<dimension>_comment`), a `verdict` label question and a general `comment`;
                 .argilla/dataset.json; records.json — a list of records {id, fields, metadata, suggestions,
                 responses {question: [{value, user_id}]}, vectors}.
    labelstudio  tasks.json — a Label Studio JSON export: tasks {id, data, meta, annotations [{completed_by,
                 lead_time, result [{from_name, to_name, type: rating|textarea|choices, value}]}], predictions};
                 label_config.xml — the labeling interface generated from the rubric (a Rating, a TextArea per
                 dimension, Choices for the verdict).

Neither tool has rounds: each **version** of an accepted item is one record / task, its reviews that
record's responses / annotations, and the lineage travels in metadata (`metadata.clinreason`, a JSON
text, in Argilla; `meta.clinreason` in Label Studio): the item exactly as stored, the version's number,
parent, origin, author, model, prompt hash, parameters, steps and final answer, which version was accepted
and how, and per reviewer the step marks, seconds spent and edited text. Reviewers appear under their
anonymised export ids (`R-…`): Argilla user ids are UUIDs derived from them, Label Studio's `completed_by`
numbers them in order of appearance; the metadata maps each back to its `R-…` id. `clinreason import
--format argilla|labelstudio` reads these exports back.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import quoteattr

from clinreason.domain.records import Verdict
from clinreason.domain.rubric import Rubric
from clinreason.stages.export.common import ExportError, safe_path

PROVENANCE_KEY = "clinreason"
GENERAL_QUESTION = "comment"
VERDICTS = [v.value for v in Verdict]
#: a fixed namespace: the same anonymised reviewer gets the same Argilla user id in every export
_USER_NAMESPACE = uuid.UUID("6f1c2a52-8d3e-5b7a-9c41-0e2f6d8b3a17")


def options_text(row: dict[str, Any]) -> str:
    return "\n".join(f"{o['label']}. {o['text']}" for o in row["options"])


def answer_text(row: dict[str, Any]) -> str:
    texts = {o["label"]: o["text"] for o in row["options"]}
    shown = [f"{label}. {texts[label]}" if label in texts else label for label in row["answer"]]
    return "; ".join(shown) if shown else (row.get("answer_text") or "")


def provenance(row: dict[str, Any], version: dict[str, Any], reviewer_ids: dict[str, str]) -> dict[str, Any]:
    """What a record carries beyond what the tool shows: the item as stored and the version's lineage."""
    return {
        "format": 1,
        "item_id": row["id"],
        "item": {"question": row["question"], "context": row["context"],
                 "options": [[o["label"], o["text"]] for o in row["options"]], "answer": row["answer"],
                 "answer_text": row["answer_text"], "language": row["language"], "specialty": row["specialty"]},
        "version": {"number": version["version"], "parent": version.get("parent_version"),
                    "origin": version["origin"], "author": version["author"], "model": version["model"],
                    "prompt_hash": version["prompt_hash"], "params": version.get("params") or {},
                    "seed": version.get("seed"), "steps": version["steps"], "final_answer": version["final_answer"],
                    "accepted": version["accepted"]},
        "decision": {"kind": row["consensus"], "accepted_version": row["accepted_version"]},
        "sources": row["sources"],
        "reviewers": {reviewer_ids[r["reviewer"]]: r["reviewer"] for r in version["reviews"]},
        "reviews": {reviewer_ids[r["reviewer"]]: {"marks": r["steps"], "seconds": r.get("seconds"),
                                                   "edited_text": r.get("edited_text")}
                    for r in version["reviews"]},
    }


def _comment_question(key: str, dims: list[str]) -> str:
    return f"{key}_comment" if key in dims else GENERAL_QUESTION


def _guidelines(rubric: Rubric) -> str:
    lines = ["Each record is one version of a rationale for a clinical question. Score it on every dimension "
             f"({rubric.scale_min}-{rubric.scale_max}), comment where it falls short, and give a verdict: accept, "
             "edit, regenerate, or flag_question when the question itself is flawed.", ""]
    for d in rubric.dimensions:
        anchors = "; ".join(f"{k} = {v}" for k, v in sorted(d.anchors.items()))
        lines.append(f"- {d.name} ({d.title}): {d.description}" + (f" [{anchors}]" if anchors else "")
                     + f" Passes at {d.threshold}.")
    return "\n".join(lines)


class _JsonArray:
    """A JSON array written element by element."""

    def __init__(self, fh: TextIO, separator: str):
        self.fh, self.separator, self.count = fh, separator, 0

    def add(self, element: dict[str, Any]) -> None:
        self.fh.write((self.separator if self.count else "") + json.dumps(element, ensure_ascii=False))
        self.count += 1


class ArgillaSink:
    def __init__(self, out: Path, rubric: Rubric, *, project: str):
        self.out, self.rubric, self.dims = out, rubric, rubric.names
        folder = out / ".argilla"
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        folder.mkdir(exist_ok=True)
        safe_path(folder, "settings.json").write_text(json.dumps(self.settings(), ensure_ascii=False),
                                                      encoding="utf-8")
        dataset = {"id": None, "inserted_at": None, "updated_at": None, "name": project or "clinreason",
                   "status": "ready", "guidelines": _guidelines(rubric), "allow_extra_metadata": True,
                   "distribution": {"strategy": "overlap", "min_submitted": 1}, "workspace_id": None,
                   "last_activity_at": None}
        safe_path(folder, "dataset.json").write_text(json.dumps(dataset, ensure_ascii=False), encoding="utf-8")
        self.fh = safe_path(out, "records.json").open("w", encoding="utf-8", newline="\n")
        self.fh.write("[")
        self.records = _JsonArray(self.fh, ", ")

    def settings(self) -> dict[str, Any]:
        def field(name: str, title: str, required: bool, markdown: bool) -> dict[str, Any]:
            return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "title": title,
                    "required": required, "description": None, "dataset_id": None,
                    "settings": {"type": "text", "use_markdown": markdown}}

        def question(name: str, title: str, description: str | None, required: bool,
                     settings: dict[str, Any]) -> dict[str, Any]:
            return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "title": title,
                    "description": description, "required": required, "dataset_id": None, "settings": settings}

        scale = list(range(self.rubric.scale_min, self.rubric.scale_max + 1))
        questions = []
        for d in self.rubric.dimensions:
            anchors = "; ".join(f"{k} = {v}" for k, v in sorted(d.anchors.items()))
            questions.append(question(d.name, d.title, d.description + (f" ({anchors})" if anchors else ""), True,
                                      {"type": "rating", "options": [{"value": v} for v in scale]}))
        for d in self.rubric.dimensions:
            questions.append(question(f"{d.name}_comment", f"{d.title}: comment", None, False,
                                      {"type": "text", "use_markdown": False}))
        questions.append(question("verdict", "Verdict", "accept, edit, regenerate, or flag_question (the question "
                                  "itself is flawed)", True,
                                  {"type": "label_selection", "options": [{"value": v, "text": v} for v in VERDICTS],
                                   "visible_options": len(VERDICTS)}))
        questions.append(question(GENERAL_QUESTION, "General comment", None, False,
                                  {"type": "text", "use_markdown": False}))
        return {"guidelines": _guidelines(self.rubric), "allow_extra_metadata": True,
                "distribution": {"strategy": "overlap", "min_submitted": 1},
                "fields": [field("question", "Question", True, False), field("context", "Context", False, False),
                           field("options", "Options", False, True), field("answer", "Gold answer", False, False),
                           field("rationale", "Rationale", True, True)],
                "questions": questions, "metadata": [], "vectors": [], "mapping": None}

    def write(self, split: str, row: dict[str, Any]) -> int:
        written = 0
        for version in row.get("history") or []:
            if version["text"] is None:
                raise ExportError(f"item {row['id']}: version {version['version']} has no text")
            users = {r["reviewer"]: str(uuid.uuid5(_USER_NAMESPACE, r["reviewer"])) for r in version["reviews"]}
            fields = {"question": row["question"], "context": row["context"] or "", "options": options_text(row),
                      "answer": answer_text(row), "rationale": version["text"]}
            responses: dict[str, list[dict[str, Any]]] = {}
            for r in version["reviews"]:
                uid = users[r["reviewer"]]
                for dim in self.dims:
                    if r["scores"].get(dim) is not None:
                        responses.setdefault(dim, []).append({"value": r["scores"][dim], "user_id": uid})
                for key, text in (r.get("comments") or {}).items():
                    responses.setdefault(_comment_question(key, self.dims), []).append({"value": text, "user_id": uid})
                responses.setdefault("verdict", []).append({"value": r["verdict"], "user_id": uid})
            meta = {"item_id": row["id"], "version": version["version"], "origin": version["origin"],
                    "accepted": version["accepted"], "language": row["language"], "specialty": row["specialty"],
                    "source": row["source"],
                    PROVENANCE_KEY: json.dumps(provenance(row, version, users), ensure_ascii=False)}
            self.records.add({"id": f"{row['id']}-v{version['version']}",
                              "fields": {k: v for k, v in fields.items() if v},
                              "metadata": meta, "suggestions": {}, "responses": responses, "vectors": {},
                              "_server_id": None})
            written += 1
        return written

    def close(self) -> list[str]:
        self.fh.write("]")
        self.fh.close()
        return [".argilla", "records.json"]


class LabelStudioSink:
    def __init__(self, out: Path, rubric: Rubric, *, project: str):
        self.out, self.rubric, self.dims = out, rubric, rubric.names
        if rubric.scale_min != 1:
            raise ExportError(f"--format labelstudio: Label Studio rates from 1, the rubric's scale starts at "
                              f"{rubric.scale_min}")
        safe_path(out, "label_config.xml").write_text(label_config(rubric), encoding="utf-8")
        self.fh = safe_path(out, "tasks.json").open("w", encoding="utf-8", newline="\n")
        self.fh.write("[\n")
        self.tasks = _JsonArray(self.fh, ",\n")
        self.annotators: dict[str, int] = {}
        self.annotations = 0

    def write(self, split: str, row: dict[str, Any]) -> int:
        written = 0
        for version in row.get("history") or []:
            if version["text"] is None:
                raise ExportError(f"item {row['id']}: version {version['version']} has no text")
            for r in version["reviews"]:
                self.annotators.setdefault(r["reviewer"], len(self.annotators) + 1)
            users = {r["reviewer"]: str(self.annotators[r["reviewer"]]) for r in version["reviews"]}
            annotations = []
            for r in version["reviews"]:
                results: list[dict[str, Any]] = []
                for dim in self.dims:
                    if r["scores"].get(dim) is not None:
                        results.append({"id": dim, "from_name": dim, "to_name": "rationale", "type": "rating",
                                        "origin": "manual", "value": {"rating": r["scores"][dim]}})
                for key, text in (r.get("comments") or {}).items():
                    name = _comment_question(key, self.dims)
                    results.append({"id": name, "from_name": name, "to_name": "rationale", "type": "textarea",
                                    "origin": "manual", "value": {"text": [text]}})
                results.append({"id": "verdict", "from_name": "verdict", "to_name": "rationale", "type": "choices",
                                "origin": "manual", "value": {"choices": [r["verdict"]]}})
                self.annotations += 1
                annotations.append({"id": self.annotations, "completed_by": self.annotators[r["reviewer"]],
                                    "lead_time": r.get("seconds"), "was_cancelled": False, "ground_truth": False,
                                    "result": results})
            data = {"question": row["question"], "context": row["context"] or "", "options": options_text(row),
                    "answer": answer_text(row), "rationale": version["text"], "item_id": row["id"],
                    "version": version["version"]}
            self.tasks.add({"id": self.tasks.count + 1, "data": data,
                            "meta": {PROVENANCE_KEY: provenance(row, version, users)},
                            "annotations": annotations, "predictions": []})
            written += 1
        return written

    def close(self) -> list[str]:
        self.fh.write("\n]\n")
        self.fh.close()
        return ["label_config.xml", "tasks.json"]


def label_config(rubric: Rubric) -> str:
    """Label Studio's labeling interface for the rubric: the question, options, gold answer and rationale
    shown; per dimension a 1..max Rating and a TextArea for the comment; the verdict as single Choices."""
    q = quoteattr
    lines = ["<View>",
             '  <Header value="Question"/>', '  <Text name="question" value="$question"/>',
             '  <Text name="context" value="$context"/>',
             '  <Header value="Options"/>', '  <Text name="options" value="$options"/>',
             '  <Header value="Gold answer"/>', '  <Text name="answer" value="$answer"/>',
             '  <Header value="Rationale"/>', '  <Text name="rationale" value="$rationale"/>']
    for d in rubric.dimensions:
        lines += [f"  <Header value={q(f'{d.title} ({rubric.scale_min}-{rubric.scale_max})')}/>",
                  f'  <Rating name={q(d.name)} toName="rationale" maxRating="{rubric.scale_max}" required="true" '
                  f"hint={q(d.description)}/>",
                  f'  <TextArea name={q(d.name + "_comment")} toName="rationale" rows="2" '
                  f"placeholder={q(f'Comment on {d.title}')}/>"]
    lines += ['  <Header value="Verdict"/>',
              '  <Choices name="verdict" toName="rationale" choice="single" required="true">']
    lines += [f"    <Choice value={q(v)}/>" for v in VERDICTS]
    lines += ["  </Choices>", '  <Header value="General comment"/>',
              f'  <TextArea name="{GENERAL_QUESTION}" toName="rationale" rows="3"/>', "</View>", ""]
    return "\n".join(lines)
