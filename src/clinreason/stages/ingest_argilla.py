"""Reading an Argilla 2.x folder (`Dataset.to_disk`): questions, drafted rationales and expert reviews
(see stages/ingest_annotated.py for what each part becomes)."""

from __future__ import annotations

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
from clinreason.stages.ingest_readers import FileFormatError, RawRecord, RecordError, display_name, is_argilla_folder

_ARGILLA_KINDS = {"rating": "rating", "text": "text", "label_selection": "label"}


def read_argilla(folder: Path, *, rationale: str, question_map: dict[str, str], rubric: Rubric
                 ) -> Iterator[RawRecord | RecordError]:
    file = display_name(folder)
    if not is_argilla_folder(folder):
        raise FileFormatError(f"{file}: not an Argilla dataset folder (Argilla's Dataset.to_disk writes "
                              ".argilla/settings.json, .argilla/dataset.json and records.json)")
    settings = load_json(folder / ".argilla" / "settings.json", file, "the dataset's settings")
    records = load_json(folder / "records.json", file, "the records, written by Dataset.to_disk with records")
    if not isinstance(settings, dict) or not isinstance(records, list):
        raise FileFormatError(f"{file}: expected .argilla/settings.json to hold an object and records.json a list "
                              "of records")
    kinds: dict[str, str] = {}
    for q in settings.get("questions") or []:
        if isinstance(q, dict) and isinstance(q.get("name"), str):
            qtype = (q.get("settings") or {}).get("type") if isinstance(q.get("settings"), dict) else None
            kinds[q["name"]] = _ARGILLA_KINDS.get(str(qtype), "other")
    roles = {name: question_role(name, kind, question_map=question_map, rubric=rubric, rationale=rationale,
                                 file=file, where=".argilla/settings.json")
             for name, kind in kinds.items()}

    def locator(record: dict[str, Any]) -> str | None:
        rid = record.get("id")
        return f"id {rid}" if isinstance(rid, str) and rid else None

    def read(record: dict[str, Any], number: int, where: str, error: Any) -> RawRecord:
        return _argilla_record(record, number, where, error, file=file, roles=roles, rationale=rationale,
                               question_map=question_map, rubric=rubric)

    yield from each_record(records, file=file, kind="record", body="fields", locator=locator, read=read)


def _argilla_record(record: dict[str, Any], number: int, locator: str, error: Any, *, file: str,
                    roles: dict[str, tuple[str, str | None]], rationale: str, question_map: dict[str, str],
                    rubric: Rubric) -> RawRecord:
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise error("metadata", "an object", metadata)
    metadata = dict(metadata)
    prov = provenance(metadata.pop(PROVENANCE_KEY, None), error)
    fields = {**metadata, **record["fields"]}
    text = fields.pop(rationale, None)
    notes = Annotations(tool="argilla", exact=prov is not None)
    if prov is not None:
        fields = exact_fields(prov, error)
        notes.drafts.append(exact_draft(prov, text, f"fields.{rationale}", error))
    else:
        if isinstance(record.get("id"), str) and "id" not in fields:
            fields["id"] = record["id"]
        if isinstance(text, str) and text.strip():
            notes.drafts.append(ImportedDraft(text=text, where=f"fields.{rationale}", author="import:argilla"))
        suggestions = record.get("suggestions") or {}
        suggestion = suggestions.get(rationale) if isinstance(suggestions, dict) else None
        if isinstance(suggestion, dict) and isinstance(suggestion.get("value"), str) and suggestion["value"].strip():
            agent = suggestion.get("agent") if isinstance(suggestion.get("agent"), str) and suggestion["agent"] \
                else None
            notes.drafts.append(ImportedDraft(text=suggestion["value"], where=f"suggestions.{rationale}", model=agent,
                                              author=f"model:{agent}" if agent else "import:argilla"))
    names = reviewer_names(prov)
    collected = Responses(file, number, locator, rubric)
    responses = record.get("responses") or {}
    if not isinstance(responses, dict):
        raise error("responses", "an object of question -> [{value, user_id}]", responses)
    for question, answers in responses.items():
        if not isinstance(answers, list):
            raise error(f"responses.{question}", "a list of {value, user_id}", answers)
        role, dim = roles.get(question) or question_role(
            question, _guess_kind(answers), question_map=question_map, rubric=rubric, rationale=rationale,
            file=file, where=f"record {number} ({locator}): field 'responses.{question}'")
        if role in ("ignored", "rationale"):
            notes.ignored.add(question)
            continue
        for k, answer in enumerate(answers):
            where = f"responses.{question}[{k}]"
            if not isinstance(answer, dict) or not answer.get("user_id"):
                raise error(where, "an object with value and user_id", answer)
            user = str(answer["user_id"])
            collected.add(user, names.get(user, user), role, dim, answer.get("value"), where, question)
    return finish_record(fields, notes, collected, prov, error, number=number, locator=locator, answers="responses",
                         needs=f"the field or suggestion '{rationale}'")


def _guess_kind(answers: list[Any]) -> str:
    values = [a.get("value") for a in answers if isinstance(a, dict)]
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "rating"
    if values and all(isinstance(v, str) for v in values):
        return "text"
    return "other"
