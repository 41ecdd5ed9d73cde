"""Reading a Label Studio JSON export: questions, drafted rationales and expert reviews (see
stages/ingest_annotated.py for what each part becomes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from clinreason.domain.rubric import Rubric
from clinreason.stages.ingest_annotated import (
    PROVENANCE_KEY,
    Annotations,
    ImportedDraft,
    Responses,
    each_record,
    exact_draft,
    exact_fields,
    finish_record,
    load_json,
    provenance,
    question_role,
    reviewer_names,
)
from clinreason.stages.ingest_readers import FileFormatError, Progress, RawRecord, RecordError, display_name

_LS_KINDS = {"rating": "rating", "textarea": "text", "choices": "label"}


def read_labelstudio(path: Path, *, rationale: str, question_map: dict[str, str], rubric: Rubric,
                     progress: Progress | None = None) -> Iterator[RawRecord | RecordError]:
    file = display_name(path)
    if path.is_dir():
        raise FileFormatError(f"{file}: a Label Studio export is one JSON file (Export → JSON), not a folder")
    tasks = load_json(path, file, "a Label Studio JSON export")
    if progress:
        progress(path.stat().st_size)
    if not isinstance(tasks, list):
        raise FileFormatError(f"{file}: a Label Studio JSON export is a list of tasks, got "
                              f"{type(tasks).__name__}")

    def locator(task: dict[str, Any]) -> str | None:
        tid = task.get("id")
        return f"task {tid}" if isinstance(tid, (int, str)) and not isinstance(tid, bool) and str(tid) else None

    def read(task: dict[str, Any], number: int, where: str, error: Any) -> RawRecord:
        return _labelstudio_task(task, number, where, error, file=file, rationale=rationale,
                                 question_map=question_map, rubric=rubric)

    yield from each_record(tasks, file=file, kind="task", body="data", locator=locator, read=read)


def _ls_user(value: Any) -> tuple[str, str] | None:
    """(id, name) of an annotation's completed_by: an id, or an object with id and email."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, str)) and str(value).strip():
        return str(value), str(value)
    if isinstance(value, dict) and value.get("id") is not None:
        return str(value["id"]), str(value.get("email") or value["id"])
    return None


def _ls_value(kind: str, value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if kind == "rating":
        return value.get("rating")
    if kind == "text":
        text = value.get("text")
        return "\n".join(str(t) for t in text) if isinstance(text, list) else text
    if kind == "label":
        return value.get("choices")
    return None


def _labelstudio_task(task: dict[str, Any], number: int, locator: str, error: Any, *, file: str, rationale: str,
                      question_map: dict[str, str], rubric: Rubric) -> RawRecord:
    meta = task.get("meta") or {}
    prov = provenance(meta.get(PROVENANCE_KEY), error) if isinstance(meta, dict) else None
    fields = dict(task["data"])
    text = fields.pop(rationale, None)
    notes = Annotations(tool="labelstudio", exact=prov is not None)
    if prov is not None:
        fields = exact_fields(prov, error)
        notes.drafts.append(exact_draft(prov, text, f"data.{rationale}", error))
    else:
        if task.get("id") is not None and "id" not in fields:
            fields["id"] = task["id"]
        if isinstance(text, str) and text.strip():
            notes.drafts.append(ImportedDraft(text=text, where=f"data.{rationale}", author="import:labelstudio"))
    predictions = task.get("predictions") or []
    if not isinstance(predictions, list):
        raise error("predictions", "a list of predictions", predictions)
    for k, prediction in enumerate(predictions if prov is None else []):
        if not isinstance(prediction, dict):
            raise error(f"predictions[{k}]", "an object with model_version and result", prediction)
        model = prediction.get("model_version")
        model = str(model) if model not in (None, "") else None
        for j, result in enumerate(prediction.get("result") or []):
            if isinstance(result, dict) and result.get("from_name") == rationale:
                value = _ls_value("text", result.get("value"))
                if isinstance(value, str) and value.strip():
                    notes.drafts.append(ImportedDraft(text=value, where=f"predictions[{k}].result[{j}]", model=model,
                                                      author=f"model:{model}" if model else "import:labelstudio"))
    names = reviewer_names(prov)
    collected = Responses(file, number, locator, rubric)
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise error("annotations", "a list of annotations", annotations)
    for k, annotation in enumerate(annotations):
        where = f"annotations[{k}]"
        if not isinstance(annotation, dict):
            raise error(where, "an object with completed_by and result", annotation)
        if annotation.get("was_cancelled"):
            continue
        user = _ls_user(annotation.get("completed_by"))
        if user is None:
            raise error(f"{where}.completed_by", "the annotator's id", annotation.get("completed_by"))
        uid, name = user
        if uid in collected.by_user:
            raise error(f"{where}.completed_by", "one annotation per annotator", uid)
        review = collected.review(uid, names.get(uid, name))
        lead = annotation.get("lead_time")
        if isinstance(lead, (int, float)) and not isinstance(lead, bool) and math.isfinite(lead) and lead >= 0:
            review.seconds = float(lead)
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise error(f"{where}.result", "a list of results", results)
        for j, result in enumerate(results):
            rwhere = f"{where}.result[{j}]"
            if not isinstance(result, dict) or not isinstance(result.get("from_name"), str):
                raise error(rwhere, "an object with from_name, type and value", result)
            kind = _LS_KINDS.get(str(result.get("type")), "other")
            role, dim = question_role(result["from_name"], kind, question_map=question_map, rubric=rubric,
                                      rationale=rationale, file=file,
                                      where=f"record {number} ({locator}): field '{rwhere}'")
            if role in ("ignored", "rationale"):
                notes.ignored.add(result["from_name"])
                continue
            collected.add(uid, review.name, role, dim, _ls_value(kind, result.get("value")), rwhere,
                          result["from_name"])
    return finish_record(fields, notes, collected, prov, error, number=number, locator=locator,
                         answers="annotations", needs=f"data.{rationale} or a prediction for '{rationale}'")
