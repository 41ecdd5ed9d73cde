"""`clinreason export OUT --format jsonl,parquet,hf`: several formats from one read of the database, each in
OUT/<format>/ with exactly the files that format's own export writes. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analytics import reviewdata
from typer.testing import CliRunner

from clinreason.cli import app
from clinreason.stages.export import ExportError, ExportOptions, parse_formats, run_export, run_exports
from clinreason.store import exports

LICENSES = {"medqa": "MIT", "cmexam": "research use only"}
FORMATS = ("jsonl", "parquet", "hf", "sft", "dpo", "prm")


@pytest.fixture
def built(engine, project):
    return reviewdata.build(engine, project["id"], n_items=60, seed=11)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kw", [{"splits": (0.8, 0.1, 0.1)}, {"with_history": True}, {"min_score": 3.5}],
                         ids=["splits", "history", "min-score"])
def test_each_format_folder_is_what_its_own_export_writes(engine, built, tmp_path, kw):
    pytest.importorskip("datasets")
    summaries = run_exports(engine, project="default", out=tmp_path / "all", formats=FORMATS,
                            opts=ExportOptions(**kw), licenses=LICENSES)
    assert [s.fmt for s in summaries] == list(FORMATS)
    assert json.loads((tmp_path / "all" / ".clinreason-export.json").read_text())["files"] == sorted(FORMATS)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted([*FORMATS, ".clinreason-export.json"])
    for fmt, summary in zip(FORMATS, summaries):
        alone = run_export(engine, project="default", out=tmp_path / fmt, opts=ExportOptions(fmt=fmt, **kw),
                           licenses=LICENSES)
        together, single = files_of(tmp_path / "all" / fmt), files_of(tmp_path / fmt)
        assert together.keys() == single.keys(), fmt
        for name in single:  # the card, the manifest and every data file, byte for byte
            assert together[name] == single[name], (fmt, name)
        assert {k: v for k, v in summary.to_dict().items() if k != "seconds"} == \
            {k: v for k, v in alone.to_dict().items() if k != "seconds"}
    assert summaries[0].total > 0


def test_formats_of_one_row_shape_share_one_pass_over_the_items(engine, built, tmp_path, monkeypatch):
    passes = []
    real = exports.accepted_items

    def counted(*args, **kwargs):
        passes.append(kwargs.get("light"))
        return real(*args, **kwargs)

    monkeypatch.setattr(exports, "accepted_items", counted)
    run_exports(engine, project="default", out=tmp_path / "a", formats=("jsonl", "parquet", "sft"),
                opts=ExportOptions(), licenses=LICENSES)
    assert passes == [False]  # one read for the three
    passes.clear()
    run_exports(engine, project="default", out=tmp_path / "b", formats=("jsonl", "dpo", "prm"),
                opts=ExportOptions(splits=(0.5, 0.5)), licenses=LICENSES)
    assert passes == [True, False, False]  # the splits' light pass once; dpo and prm carry every version


def test_force_replaces_a_previous_export_of_several_formats(engine, built, tmp_path):
    out = tmp_path / "ds"
    run_exports(engine, project="default", out=out, formats=("jsonl", "sft"), opts=ExportOptions(),
                licenses=LICENSES)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        run_exports(engine, project="default", out=out, formats=("jsonl", "prm"), opts=ExportOptions(),
                    licenses=LICENSES)
    run_exports(engine, project="default", out=out, formats=("jsonl", "prm"), opts=ExportOptions(force=True),
                licenses=LICENSES)
    assert sorted(p.name for p in out.iterdir()) == [".clinreason-export.json", "jsonl", "notes.txt", "prm"]
    assert (out / "notes.txt").read_text() == "mine"
    (out / "sft").mkdir()  # a folder the previous export did not write is not replaced
    (out / "sft" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="sft exists"):
        run_exports(engine, project="default", out=out, formats=("jsonl", "sft"), opts=ExportOptions(force=True),
                    licenses=LICENSES)
    assert (out / "sft" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("text, message", [("jsonl,,hf", "an empty name"), ("jsonl,jsonl", "more than once"),
                                           ("jsonl,xml", "got 'xml'"), ("", "an empty name")])
def test_bad_format_lists_are_refused(text, message):
    with pytest.raises(ExportError, match=message):
        parse_formats(text)


def test_splits_with_an_annotation_tool_are_refused_before_anything_is_written(engine, built, tmp_path):
    with pytest.raises(ExportError, match="--splits: not for argilla"):
        run_exports(engine, project="default", out=tmp_path / "x", formats=("jsonl", "argilla"),
                    opts=ExportOptions(splits=(0.5, 0.5)), licenses=LICENSES)
    assert not (tmp_path / "x").exists()


def test_the_command_reports_every_format(db_url, engine, built, tmp_path):
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["export", str(out), "--format", "jsonl,sft", "--json", "--db", db_url,
                                      "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["out"] == str(out) and [f["format"] for f in report["formats"]] == ["jsonl", "sft"]
    assert all(f["total"] == len(built.accepted) for f in report["formats"])
    assert [f["out"] for f in report["formats"]] == [str(out / "jsonl"), str(out / "sft")]
    result = CliRunner().invoke(app, ["export", str(tmp_path / "bad"), "--format", "jsonl,csv", "--db", db_url,
                                      "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code != 0 and "got 'csv'" in result.output
