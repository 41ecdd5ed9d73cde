"""Property-based fuzzing of the importers: whatever a file holds, the answer is an import or a clear,
one-line refusal naming the file (and, for a bad record, the record and the field) — never a traceback —
and a refused import writes nothing. Every reader is covered: JSON lines (generic, MedQA, MedMCQA), CSV
(generic, MMLU), PubMedQA's whole-file JSON, CMExam's XLSX, Parquet and a Hugging Face `datasets` folder;
and so is a file that is not UTF-8 at all. The web upload of a question bank is fuzzed in
tests/security/test_fuzz_upload.py."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import re
import string
import zipfile

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from ingest.refusals import import_or_refusal, row_counts
from sqlalchemy import select

from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store.tables import item_sources, items


def fuzz(examples: int) -> settings:
    """Bounded and reproducible: the same examples on every run (and in CI)."""
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Texts a real bank may hold, and the characters a database cannot: NUL (PostgreSQL), lone surrogates.
awkward_text = st.one_of(st.text(max_size=12), st.sampled_from(
    ["A", "B", "AB", "A,C", "nan", "None", "", " ", "E", "1", "0", "x\x00y", "\ud800", "Fièvre", "发热",
     '{"A": "x", "B": "y"}', '["x", "y"]', '{"A": "x", "A": "y"}', "[[[[", "A x\\nB y", "A x\nB y", "zh-Hans-CN-x-long-tag",
     "s" * 250]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10), st.sampled_from([2 ** 70, -(2 ** 63)]),
                    st.floats(allow_nan=True), awkward_text)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(string.ascii_uppercase, max_size=2),
                                                                       inner, max_size=5)), max_leaves=8)
GENERIC_KEYS = ("question", "options", "answer", "answer_text", "explanation", "specialty", "context", "language",
                "id", "extra")
records = st.fixed_dictionaries({}, optional={"question": values, "options": values, "answer": values,
                                              "answer_idx": values, "opa": values, "opb": values, "opc": values,
                                              "opd": values, "cop": values, "explanation": values,
                                              "language": values, "specialty": values, "meta_info": values,
                                              "subject_name": values, "exp": values})
# A plausible record (so that deeper checks are reached), then fields replaced by arbitrary values.
_VALID = {"question": "Which drug?", "options": {"A": "aspirin", "B": "heparin"}, "answer": "A", "answer_idx": "A",
          "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1}
near_valid = st.dictionaries(st.sampled_from(sorted(_VALID) + ["language", "specialty", "meta_info", "extra"]),
                             values, max_size=3).map(lambda changes: {**_VALID, **changes})
lines = st.one_of(records.map(json.dumps), near_valid.map(json.dumps), st.text(max_size=40),
                  st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
                  st.sampled_from(["[" * 5000, '{"question": "\\ud800?", "options": ["a", "b"], "answer": "A"}',
                                   '{"question": "q", "options": ["a", "b"], "answer": "A", "language": "' + "x" * 40
                                   + '"}', '{"question": "q\\u0000", "options": ["a", "b"], "answer": "A"}']))


@fuzz(120)
@given(body=st.lists(lines, min_size=1, max_size=6), fmt=st.sampled_from(["jsonl", "medqa", "medmcqa", "auto"]))
@example(body=['{"question": "q", "options": "{\\"A\\": \\"x\\", \\"B\\": \\"y\\"}", "answer": "A"}'], fmt="jsonl")
@example(body=['{"question": "q", "options": {"A": "x", "B": "y"}, "answer_idx": Infinity}'], fmt="medqa")
@example(body=['{"question": "q", "options": ["x", "y"], "answer": "A", "extra": Infinity}'], fmt="jsonl")
def test_any_jsonl_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, body, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "bank.jsonl"
    path.write_text("\n".join(body) + "\n", encoding="utf-8", errors="surrogatepass")
    import_or_refusal(engine, path, fmt)


@fuzz(60)
@given(rows=st.lists(st.lists(st.text(max_size=10), min_size=0, max_size=8), min_size=1, max_size=5))
def test_any_csv_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, rows):
    path = tmp_path_factory.mktemp("fuzz") / "anatomy_test.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    for fmt in ("mmlu", "csv"):
        import_or_refusal(engine, path, fmt)


cells = st.one_of(awkward_text, st.integers(-3, 9).map(str), st.sampled_from(["A", "1", "x" * 140_000]))


@fuzz(60)
@given(header=st.lists(st.sampled_from(GENERIC_KEYS), min_size=1, max_size=6, unique=True),
       rows=st.lists(st.lists(cells, min_size=6, max_size=6), min_size=1, max_size=4),
       mapping=st.sampled_from([None, {"options": "answer_text,explanation"}, {"question": "context"}]))
@example(header=["question", "options", "answer"], rows=[['q', '{"A": "x", "B": "y"}', "A", "", "", ""]], mapping=None)
@example(header=["question", "options", "answer"], rows=[['q', "x" * 140_000, "A", "", "", ""]], mapping=None)
def test_csv_with_a_header_and_json_like_cells(tmp_path_factory, engine, project, header, rows, mapping):
    """The generic CSV layout: cells that look like JSON, huge cells, mapped columns."""
    path = tmp_path_factory.mktemp("fuzz") / "bank.csv"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(row[: len(header)] for row in rows)
    import_or_refusal(engine, path, "csv", mapping=mapping)


pubmed_records = st.fixed_dictionaries({}, optional={
    "QUESTION": values, "CONTEXTS": values, "LABELS": values, "final_decision": values, "LONG_ANSWER": values,
    "YEAR": values, "MESHES": values, "reasoning_required_pred": values})


@fuzz(60)
@given(data=st.one_of(st.dictionaries(st.text(max_size=8), st.one_of(pubmed_records, values), max_size=4),
                      values),
       indent=st.sampled_from([None, 1]), fmt=st.sampled_from(["pubmedqa", "auto"]))
@example(data={"1": {"QUESTION": "q?", "final_decision": "yes", "CONTEXTS": ["a"], "YEAR": float("inf")}},
         indent=1, fmt="pubmedqa")
def test_any_pubmedqa_json_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, data, indent, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "pubmedqa_bank.json"
    path.write_text(json.dumps(data, indent=indent), encoding="utf-8", errors="surrogatepass")
    import_or_refusal(engine, path, fmt)


# --- binary formats: XLSX (CMExam), Parquet, a `datasets` folder ------------------------------------------

_XLSX_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\n\t"), max_size=12)
xlsx_cells = st.one_of(st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=False, allow_infinity=False),
                       st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2030, 1, 1)),
                       _XLSX_TEXT, st.sampled_from(["A", "ABCD", "nan", "A 原发病\\nB 出血部位", "A x\\nA y",
                                                   "A 甲\\nB 乙\\nC 丙", "E", "s" * 300]))
CMEXAM_COLUMNS = ("Question", "Options", "Answer", "Explanation")


@fuzz(40)
@given(header=st.lists(st.sampled_from(CMEXAM_COLUMNS + ("Other", "")), min_size=0, max_size=5),
       rows=st.lists(st.lists(xlsx_cells, min_size=0, max_size=6), min_size=0, max_size=4),
       fmt=st.sampled_from(["cmexam", "auto"]))
@example(header=list(CMEXAM_COLUMNS), rows=[["问题?", "A 甲\\nB 乙", "C", None]], fmt="cmexam")
def test_any_xlsx_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, header, rows, fmt):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    if header:
        ws.append(header)
    for row in rows:
        ws.append(row)
    path = tmp_path_factory.mktemp("fuzz") / "cmexam_bank.xlsx"
    wb.save(path)
    import_or_refusal(engine, path, fmt)


def _arrow_columns():
    import pyarrow as pa

    text = awkward_text.filter(lambda s: not re.search(r"[\ud800-\udfff]", s))
    return {
        "string": (pa.string(), text),
        "int": (pa.int64(), st.integers(-3, 30) | st.just(2 ** 62)),
        "float": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
        "bool": (pa.bool_(), st.booleans()),
        "binary": (pa.binary(), st.binary(max_size=8)),
        "list": (pa.list_(pa.string()), st.lists(st.none() | text, max_size=4)),
        "struct": (pa.struct([("A", pa.string()), ("B", pa.string())]),
                   st.fixed_dictionaries({"A": st.none() | text, "B": st.none() | text})),
        "map": (pa.map_(pa.string(), pa.string()),
                st.dictionaries(st.sampled_from("ABC"), text, max_size=3).map(lambda d: list(d.items()))),
        "timestamp": (pa.timestamp("s"), st.datetimes(min_value=dt.datetime(1970, 1, 1),
                                                      max_value=dt.datetime(2100, 1, 1))),
        "date": (pa.date32(), st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(2100, 1, 1))),
        "decimal": (pa.decimal128(9, 3), st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False)),
    }


@st.composite
def arrow_tables(draw, *, hf: bool = False):
    """A table with some of the generic columns (or extra ones), each of one arbitrary Arrow type."""
    import pyarrow as pa

    kinds = _arrow_columns()
    if hf:  # `datasets` has no feature type for Arrow maps
        kinds.pop("map")
    names = draw(st.lists(st.sampled_from(GENERIC_KEYS), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(0, 4))
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(kinds)))
        arrow_type, strategy = kinds[kind]
        if name == "question" and draw(st.booleans()):
            arrow_type, strategy = pa.string(), st.sampled_from(["Which drug?", "发热的原因?"])
        if name == "options" and draw(st.booleans()):
            arrow_type, strategy = pa.list_(pa.string()), st.just(["aspirin", "heparin", "warfarin"])
        columns[name] = pa.array(draw(st.lists(st.none() | strategy, min_size=n, max_size=n)), type=arrow_type)
    return pa.table(columns)


@fuzz(60)
@given(table=arrow_tables())
def test_any_parquet_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, table):
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("fuzz") / "bank.parquet"
    pq.write_table(table, path)
    for fmt in ("parquet", "auto"):
        import_or_refusal(engine, path, fmt)


@fuzz(20)
@given(tables=st.lists(arrow_tables(hf=True), min_size=1, max_size=2), as_dict=st.booleans())
def test_any_datasets_folder_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, tables, as_dict):
    import datasets
    from datasets.table import InMemoryTable

    datasets.disable_progress_bars()
    try:
        parts = [datasets.Dataset(InMemoryTable(t)) for t in tables]
    except (TypeError, ValueError, NotImplementedError):
        assume(False)  # an Arrow type `datasets` has no feature for: not a folder anyone could hand us
    path = tmp_path_factory.mktemp("fuzz") / "bank_hf"
    if as_dict:
        datasets.DatasetDict({f"split{i}": p for i, p in enumerate(parts)}).save_to_disk(str(path))
    else:
        parts[0].save_to_disk(str(path))
    for fmt in ("hf", "auto"):
        import_or_refusal(engine, path, fmt)


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "bad_sheet_xml", "zip_without_workbook"])
def test_damaged_xlsx_is_refused_cleanly(engine, project, tmp_path, damage):
    import openpyxl

    path = tmp_path / "cmexam_bank.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(list(CMEXAM_COLUMNS))
    for i in range(50):
        wb.active.append([f"问题 {i}?", "A 甲\\nB 乙", "A", "解释"])
    wb.save(path)
    good = path.read_bytes()
    if damage == "random_bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        with zipfile.ZipFile(path) as src:
            members = {name: src.read(name) for name in src.namelist()}
        if damage == "bad_sheet_xml":
            members["xl/worksheets/sheet1.xml"] = members["xl/worksheets/sheet1.xml"][:400] + b"<<<not xml"
        else:
            members = {"hello.txt": b"hi"}
        with zipfile.ZipFile(path, "w") as out:
            for name, data in members.items():
                out.writestr(name, data)
    for fmt in ("cmexam", "auto"):
        assert import_or_refusal(engine, path, fmt) is None


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "corrupt_pages"])
def test_damaged_parquet_is_refused_cleanly(engine, project, tmp_path, damage):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bank.parquet"
    n = 3000
    pq.write_table(pa.table({"question": [f"Which drug {i}?" for i in range(n)],
                             "options": [["aspirin", "heparin"]] * n, "answer": ["A"] * n}), path,
                   compression="none", row_group_size=500)
    good = bytearray(path.read_bytes())
    if damage == "random_bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "truncated":
        path.write_bytes(bytes(good[: len(good) // 2]))
    else:  # keep the footer, scribble over the data pages in the middle
        middle = len(good) // 2
        good[middle - 4000: middle + 4000] = bytes([0xFF]) * 8000
        path.write_bytes(bytes(good))
    for fmt in ("parquet", "auto"):
        assert import_or_refusal(engine, path, fmt) is None


def test_damaged_datasets_folder_is_refused_cleanly(engine, project, tmp_path):
    import datasets

    datasets.disable_progress_bars()
    path = tmp_path / "bank_hf"
    datasets.Dataset.from_dict({"question": ["Which drug?"] * 20, "options": [["a", "b"]] * 20,
                                "answer": ["A"] * 20}).save_to_disk(str(path))
    shard = next(path.glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[:200])
    assert import_or_refusal(engine, path, "hf") is None
    (path / "state.json").write_text("{not json", encoding="utf-8")
    assert import_or_refusal(engine, path, "auto") is None


# --- files that are not UTF-8 -----------------------------------------------------------------------------

_SAMPLE = {"jsonl": '{"question": "Fièvre et toux?", "options": {"A": "grippe", "B": "angine"}, "answer": "A"}\n',
           "csv": 'question,options,answer\nFièvre et toux?,"A grippe\\nB angine",A\n',
           "mmlu": 'Fièvre et toux?,grippe,angine,rhume,asthme,A\n',
           "pubmedqa": '{"1": {"QUESTION": "Fièvre?", "CONTEXTS": ["x"], "final_decision": "yes"}}',
           "medqa": '{"question": "Fièvre?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}\n',
           "medmcqa": '{"question": "Fièvre?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1}\n'}
_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "mmlu": ".csv", "pubmedqa": ".json", "medqa": ".jsonl",
           "medmcqa": ".json"}
_ENCODINGS = {"latin-1": lambda t: t.encode("latin-1"), "utf-16-le (no BOM)": lambda t: t.encode("utf-16-le"),
              "utf-16 (BOM)": lambda t: t.encode("utf-16"), "cp1252": lambda t: t.encode("cp1252")}


@pytest.mark.parametrize("encoding", sorted(_ENCODINGS))
@pytest.mark.parametrize("layout", sorted(_SAMPLE))
def test_a_file_that_is_not_utf8_is_refused_as_such(engine, project, tmp_path, layout, encoding):
    path = tmp_path / f"bank_{layout}_test{_SUFFIX[layout]}"
    path.write_bytes(_ENCODINGS[encoding](_SAMPLE[layout]))
    for fmt in (layout, "auto"):
        before = row_counts(engine)
        with pytest.raises(ImportAborted) as caught:
            import_path(engine, project="default", path=path, fmt=fmt)
        message = str(caught.value)
        assert path.name in message and "not UTF-8" in message and "\n" not in message, (fmt, message)
        assert row_counts(engine) == before


@fuzz(40)
@given(blob=st.binary(min_size=1, max_size=200), layout=st.sampled_from(sorted(_SAMPLE)))
def test_random_bytes_are_refused_as_not_utf8(tmp_path_factory, engine, project, blob, layout):
    try:
        blob.decode("utf-8")
        assume(b"\x00" in blob)  # valid UTF-8 is a different test's business, unless it holds NULs
    except UnicodeDecodeError:
        pass
    path = tmp_path_factory.mktemp("fuzz") / f"bank{_SUFFIX[layout]}"
    path.write_bytes(_SAMPLE[layout].encode("utf-8")[:20] + blob)
    before = row_counts(engine)
    for fmt in (layout, "auto"):
        with pytest.raises(ImportAborted) as caught:
            import_path(engine, project="default", path=path, fmt=fmt)
        message = str(caught.value)
        assert path.name in message and "not UTF-8" in message and "\n" not in message, (fmt, message)
    assert row_counts(engine) == before


def test_a_folder_names_the_file_that_is_not_utf8_among_the_skipped(engine, project, tmp_path):
    (tmp_path / "good.jsonl").write_text(_SAMPLE["jsonl"].replace("Fièvre", "Fever"), encoding="utf-8")
    (tmp_path / "bad.jsonl").write_bytes(_SAMPLE["jsonl"].encode("utf-16-le"))
    summary = import_or_refusal(engine, tmp_path, "auto")
    assert summary is not None and summary.added == 1
    assert any(s.startswith("bad.jsonl (not UTF-8 text") for s in summary.skipped_files), summary.skipped_files


def test_a_file_name_that_is_not_utf8_is_stored_readably(engine, project, tmp_path):
    path = tmp_path / "bank-\udcff.jsonl"  # the byte 0xFF in a Linux file name
    path.write_text(_SAMPLE["jsonl"], encoding="utf-8")
    summary = import_or_refusal(engine, path, "jsonl")
    assert summary is not None and summary.added == 1
    with engine.connect() as conn:
        assert conn.execute(select(item_sources.c.file)).scalar_one() == "bank-\ufffd.jsonl"


@pytest.mark.parametrize("kw,expected", [({"source": "s" * 101}, "--source: at most 100"),
                                         ({"source": "med\x00qa"}, "--source: text without NUL"),
                                         ({"license": "l" * 201}, "--license: at most 200")])
def test_a_source_or_licence_the_database_cannot_hold_is_refused(engine, project, tmp_path, kw, expected):
    path = tmp_path / "bank.jsonl"
    path.write_text(_SAMPLE["jsonl"], encoding="utf-8")
    before = row_counts(engine)
    with pytest.raises(ImportAborted, match=re.escape(expected)):
        import_path(engine, project="default", path=path, fmt="jsonl", **kw)
    assert row_counts(engine) == before
    long_name = tmp_path / ("b" * 150 + ".jsonl")  # a source taken from the file name is cut to fit instead
    long_name.write_text(_SAMPLE["jsonl"], encoding="utf-8")
    assert import_or_refusal(engine, long_name, "jsonl").added == 1


def test_metadata_of_every_arrow_type_is_stored_as_json(engine, project, tmp_path):
    """Binary, timestamp, date, decimal and infinite values in unmapped columns land in the item's metadata
    as JSON any database accepts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bank.parquet"
    pq.write_table(pa.table({
        "question": ["Which drug?"], "options": [["aspirin", "heparin"]], "answer": ["A"],
        "blob": pa.array([b"\xff\x00"], pa.binary()), "when": pa.array([dt.datetime(2024, 5, 1, 8, 30)]),
        "day": pa.array([dt.date(2024, 5, 1)]), "price": pa.array([decimal.Decimal("1.250")], pa.decimal128(9, 3)),
        "score": [float("inf")]}), path)
    assert import_or_refusal(engine, path, "parquet").added == 1
    with engine.connect() as conn:
        meta = conn.execute(select(items.c.meta)).scalar_one()
    assert meta == {"blob": "base64:/wA=", "when": "2024-05-01T08:30:00", "day": "2024-05-01", "price": "1.250",
                    "score": "inf"}
