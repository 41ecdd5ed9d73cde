"""Property-based fuzzing of the readers issue 15 added, as tests/security/test_fuzz_importers.py does for the
others: whatever the file holds — a JSON document under any `--records` path, delimited text with any
delimiter and cells that look like JSON or Python literals, option objects, integer answers, an Argilla
folder, a Label Studio export — the answer is an import or a clear one-line refusal naming the file (and,
for a bad record, the record and the field), never a traceback; a refused import writes nothing; a dry run
never writes."""

from __future__ import annotations

import csv
import json
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ingest.refusals import import_or_refusal

from clinreason.stages.ingest_json import parse_structure


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


texts = st.one_of(st.text(max_size=10), st.sampled_from(
    ["A", "B", "AB", "1", "0", "4", "nan", "", "[", "['x', 'y']", "('a', 'b')", "{'A': 'x', 'A': 'y'}",
     '["x", "y"]', "[1, 2]", "{**x}", "[[[[", "__import__('os')", "A x\\nB y", "x\x00y", "\ud800", "发热"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.floats(allow_nan=True), texts)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["A", "B", "key", "text", "name", "questions", "q"]),
                                                 inner, max_size=4)), max_leaves=10)
option_objects = st.lists(st.fixed_dictionaries({}, optional={"key": scalars, "text": texts}), max_size=4)
record = st.fixed_dictionaries({}, optional={"question": values, "q": texts, "options": st.one_of(values, option_objects),
                                             "answer": values, "specialty": values})
documents = st.one_of(
    values,
    st.lists(record, max_size=4),
    st.dictionaries(st.sampled_from(["sections", "meta"]),
                    st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=5),
                                    st.fixed_dictionaries({"questions": st.lists(record, max_size=3)},
                                                          optional={"name": texts}), max_size=3), max_size=2))
MAPPINGS = [None, {"specialty": "^name"}, {"specialty": "^*"}, {"question": "^q"},
            {"options": "options", "option_text": "text", "option_label": "key"}, {"options": "options",
                                                                                   "option_text": "text"}]


@fuzz(120)
@given(doc=documents, records=st.sampled_from([None, "*", "sections", "sections.*.questions", "sections.*", "0",
                                               "meta.*.questions.0", "a..b"]),
       mapping=st.sampled_from(MAPPINGS), base=st.sampled_from([None, 0, 1]), dry_run=st.booleans())
@example(doc={"sections": {"S": {"name": "Cardio", "questions": [
    {"question": "q?", "options": [{"key": 1, "text": "x"}, {"key": 2, "text": "y"}], "answer": "2"}]}}},
    records="sections.*.questions", mapping=MAPPINGS[4], base=None, dry_run=False)
@example(doc=[{"question": "q?", "options": "['x', 'y']", "answer": 1}], records=None, mapping=None, base=None,
         dry_run=False)
def test_any_json_document_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, doc, records, mapping,
                                                          base, dry_run):
    path = tmp_path_factory.mktemp("fuzz") / "bank.json"
    path.write_text(json.dumps(doc), encoding="utf-8", errors="surrogatepass")
    import_or_refusal(engine, path, "json", records=records, mapping=mapping, answer_base=base, dry_run=dry_run)


cells = st.one_of(texts, st.integers(-2, 6).map(str), st.sampled_from(["a;b", "x|y", "t\tu", '"quoted, cell"']))


@fuzz(80)
@given(header=st.lists(st.sampled_from(["question", "options", "answer", "A", "B", "specialty"]), min_size=1,
                       max_size=5, unique=True),
       rows=st.lists(st.lists(cells, min_size=5, max_size=5), min_size=1, max_size=4),
       delimiter=st.sampled_from([",", ";", "\t", "|"]), given_delimiter=st.booleans(),
       fmt=st.sampled_from(["csv", "tsv", "auto"]), base=st.sampled_from([None, 0, 1]))
@example(header=["question", "options", "answer"], rows=[["q?", "['Aspirin', 'Heparin']", "1", "", ""]],
         delimiter=";", given_delimiter=False, fmt="csv", base=None)
def test_any_delimited_file_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, header, rows, delimiter,
                                                           given_delimiter, fmt, base):
    suffix = ".tsv" if fmt == "tsv" else ".csv"
    path = tmp_path_factory.mktemp("fuzz") / f"bank{suffix}"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(row[: len(header)] for row in rows)
    import_or_refusal(engine, path, fmt, delimiter=delimiter if given_delimiter and fmt != "auto" else None,
                      answer_base=base)


@fuzz(200)
@given(text=st.one_of(st.text(max_size=30), texts, st.sampled_from(["[" * 300, "(" * 300 + ")" * 300,
                                                                     "[1, [2, [3]]]", "{1: 'a', 1.0: 'b'}",
                                                                     "[x for x in y]", "{'a': [1, 2]}"])))
def test_parse_structure_returns_a_structure_or_the_text_unchanged(text):
    out = parse_structure(text)
    assert out is text or isinstance(out, (list, dict))


argilla_records = st.lists(st.one_of(values, st.fixed_dictionaries(
    {"fields": st.one_of(values, st.fixed_dictionaries({}, optional={"question": texts, "options": values,
                                                                     "answer": texts, "rationale": texts}))},
    optional={"metadata": st.one_of(values, st.fixed_dictionaries({}, optional={"clinreason": values})),
              "suggestions": st.one_of(values, st.fixed_dictionaries({}, optional={"rationale": st.fixed_dictionaries(
                  {}, optional={"value": texts, "agent": texts, "score": scalars})})),
              "responses": st.one_of(values, st.fixed_dictionaries({}, optional={
                  q: st.lists(st.fixed_dictionaries({}, optional={"value": scalars, "user_id": texts}), max_size=2)
                  for q in ("correctness", "reasoning_comment", "verdict", "quality", "note")})),
              "id": texts})), max_size=4)
argilla_questions = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["correctness", "reasoning_comment",
                                                                             "verdict", "quality", "note"]),
                                                    "settings": st.fixed_dictionaries({"type": st.sampled_from(
                                                        ["rating", "text", "label_selection", "span", 3])})}),
                             max_size=4)


@fuzz(80)
@given(records=argilla_records, questions=argilla_questions,
       question_map=st.sampled_from([{}, {"quality": "correctness"}, {"quality": "ignore", "note": "general"},
                                     {"quality": "nonsense"}]), raw=st.sampled_from([None, "{", "[]", "null"]))
def test_any_argilla_folder_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, records, questions,
                                                           question_map, raw):
    folder = tmp_path_factory.mktemp("fuzz") / "argilla_ds"
    (folder / ".argilla").mkdir(parents=True)
    (folder / ".argilla" / "settings.json").write_text(raw if raw is not None else json.dumps(
        {"fields": [], "questions": questions}), encoding="utf-8")
    (folder / "records.json").write_text(json.dumps(records), encoding="utf-8", errors="surrogatepass")
    import_or_refusal(engine, folder, "argilla", question_map=question_map)


ls_results = st.lists(st.one_of(values, st.fixed_dictionaries(
    {"from_name": st.sampled_from(["correctness", "reasoning", "reasoning_comment", "verdict", "quality", "rationale"]),
     "type": st.sampled_from(["rating", "textarea", "choices", "labels"]),
     "value": st.one_of(values, st.fixed_dictionaries({}, optional={"rating": scalars, "text": values,
                                                                    "choices": values}))})), max_size=4)
ls_tasks = st.lists(st.one_of(values, st.fixed_dictionaries(
    {"data": st.one_of(values, st.fixed_dictionaries({}, optional={"question": texts, "options": values,
                                                                   "answer": texts, "rationale": texts}))},
    optional={"annotations": st.lists(st.fixed_dictionaries({}, optional={
        "completed_by": st.one_of(scalars, st.fixed_dictionaries({"id": scalars}, optional={"email": texts})),
        "lead_time": scalars, "was_cancelled": st.booleans(), "result": ls_results}), max_size=3),
        "predictions": st.lists(st.fixed_dictionaries({}, optional={"model_version": scalars,
                                                                    "result": ls_results}), max_size=2),
        "meta": st.one_of(values, st.fixed_dictionaries({}, optional={"clinreason": values})), "id": scalars})),
    max_size=4)


@fuzz(80)
@given(tasks=st.one_of(ls_tasks, values), fmt=st.sampled_from(["labelstudio", "auto"]))
@example(tasks=[{"data": {"question": "q?", "options": "A x\nB y", "answer": "A", "rationale": "Because.\nFinal answer: A"},
                 "annotations": [{"completed_by": 3, "lead_time": 5, "result": [
                     {"from_name": "correctness", "type": "rating", "value": {"rating": 4}}]}]}],
         fmt="labelstudio")
def test_any_label_studio_export_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, tasks, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "ls_export.json"
    path.write_text(json.dumps(tasks), encoding="utf-8", errors="surrogatepass")
    import_or_refusal(engine, path, fmt)
