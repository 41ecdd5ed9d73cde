"""Property-based fuzzing of the importers: whatever a file holds, the answer is an import or a clear,
one-line refusal — never a traceback — and a refused import writes nothing."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store.tables import events, items

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["A", "B", "AB", "nan", "", " ", "E", "1", "0"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(string.ascii_uppercase, max_size=2),
                                                                       inner, max_size=5)), max_leaves=8)
records = st.fixed_dictionaries({}, optional={"question": values, "options": values, "answer": values,
                                              "answer_idx": values, "opa": values, "opb": values, "opc": values,
                                              "opd": values, "cop": values, "explanation": values})
lines = st.one_of(records.map(lambda r: json.dumps(r)), st.text(max_size=40),
                  st.binary(max_size=30).map(lambda b: b.decode("latin-1")))


def _count(engine):
    with engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(items)).scalar_one(),
                conn.execute(select(func.count()).select_from(events)).scalar_one())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(lines, min_size=1, max_size=6), fmt=st.sampled_from(["jsonl", "medqa", "medmcqa", "auto"]))
def test_any_jsonl_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, body, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "bank.jsonl"
    path.write_text("\n".join(body) + "\n", encoding="utf-8", errors="surrogatepass")
    before = _count(engine)
    try:
        import_path(engine, project="default", path=path, fmt=fmt)
    except ImportAborted as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        assert _count(engine) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.text(max_size=10), min_size=0, max_size=8), min_size=1, max_size=5))
def test_any_csv_is_imported_or_refused_cleanly(tmp_path_factory, engine, project, rows):
    import csv

    path = tmp_path_factory.mktemp("fuzz") / "anatomy_test.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    before = _count(engine)
    for fmt in ("mmlu", "csv"):
        try:
            import_path(engine, project="default", path=path, fmt=fmt)
        except ImportAborted as exc:
            assert "\n" not in str(exc)
            assert _count(engine) == before
