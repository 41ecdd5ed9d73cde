"""The Parquet sink's row groups: converted as one struct array each, they are the bytes Table.from_pylist
gives for the same rows (what the sink wrote before), with history, null fields and missing keys."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from analytics import reviewdata

from clinreason.stages.export import ExportOptions, formats, run_export
from clinreason.stages.export.formats import arrow_schema, open_sink


def test_parquet_row_groups_are_the_bytes_from_pylist_gives(engine, project, tmp_path, monkeypatch):
    reviewdata.build(engine, project["id"], n_items=40, seed=5)
    run_export(engine, project="default", out=tmp_path / "rows", opts=ExportOptions(fmt="jsonl", with_history=True),
               card=False)
    rows = [json.loads(line) for line in (tmp_path / "rows" / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    dims = list(rows[0]["scores"]["mean"])
    rows[0]["context"] = None
    del rows[1]["answer_text"]  # a missing key is a null, as from_pylist makes it
    monkeypatch.setattr(formats, "ROW_GROUP", 7)  # several row groups, the last one short
    opts = ExportOptions(fmt="parquet", with_history=True)
    (tmp_path / "sink").mkdir()
    sink = open_sink("parquet", tmp_path / "sink", tmp_path, ("data",), dims, opts, step_labels=Counter())
    for row in rows:
        sink.write("data", row)
    sink.close()
    schema = arrow_schema(dims, True)
    expected = tmp_path / "expected.parquet"
    with pq.ParquetWriter(str(expected), schema, compression="zstd") as writer:
        for start in range(0, len(rows), 7):
            writer.write_table(pa.Table.from_pylist(rows[start:start + 7], schema=schema))
    written = Path(tmp_path / "sink" / "data.parquet")
    assert written.read_bytes() == expected.read_bytes()
    assert pq.read_table(written).to_pylist()[1]["answer_text"] is None
