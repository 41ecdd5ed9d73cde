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
    exact_draft,
    exact_fields,
    load_json,
    provenance,
    question_role,
    review_extras,
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
    for number, record in enumerate(records, 1):
        rid = record.get("id") if isinstance(record, dict) else None
        locator = f"id {rid}" if isinstance(rid, str) and rid else f"record {number}"

        def error(where: str, expected: str, got: Any = None, _n: int = number, _loc: str = locator) -> RecordError:
            return RecordError(file, _n, where, expected, got, _loc)

        if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
            yield error("(record)", "an Argilla record: an object with fields", record)
            continue
        try:
            yield _argilla_record(record, number, locator, error, file=file, roles=roles, rationale=rationale,
                                  question_map=question_map, rubric=rubric)
        except RecordError as exc:
            yield exc


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
    notes.reviews = collected.finish()
    review_extras(prov, notes.reviews, error)
    if notes.reviews and not notes.drafts:
        raise error("responses", f"a rationale to review: responses need the field or suggestion '{rationale}' "
                    "(--map rationale=NAME)")
    return RawRecord(number, locator, fields, annotations=notes)


def _guess_kind(answers: list[Any]) -> str:
    values = [a.get("value") for a in answers if isinstance(a, dict)]
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "rating"
    if values and all(isinstance(v, str) for v in values):
        return "text"
    return "other"
