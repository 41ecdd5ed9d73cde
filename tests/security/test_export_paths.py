"""An export writes and removes files inside the folder it was given, and nowhere else: not through a
tampered manifest (names with ../, absolute paths, entries that are links to other folders, entries that
are not names at all), and not through links planted in the folder under the names an export writes —
in every format, with and without splits. tests/export/test_export.py covers the plain case (a linked
data.jsonl under --force)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from analytics import reviewdata

from clinreason.stages.export import MANIFEST, ExportError, ExportOptions, run_export


@pytest.fixture
def built(engine, project):
    return reviewdata.build(engine, project["id"], n_items=20, seed=5)


def _outside(tmp_path: Path) -> Path:
    """A folder beside the export with files an escaping export would overwrite or delete."""
    outside = tmp_path / "outside"
    (outside / "train").mkdir(parents=True)
    for name in ("victim.txt", "data.jsonl", "README.md", "state.json", "dataset_info.json", "dataset_dict.json",
                 "data.parquet", "train.jsonl", "train/state.json", "train/dataset_info.json"):
        (outside / name).write_text("do not touch", encoding="utf-8")
    return outside


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _export(engine, out: Path, **kw):
    return run_export(engine, project="default", out=out, opts=ExportOptions(force=True, **kw), licenses={})


@pytest.mark.parametrize("entries", [
    ["../outside/victim.txt"], ["sub/../../outside/victim.txt"], ["{abs}"], ["link_to_outside"],
    ["link_to_outside/victim.txt"], [".", ""], ["../outside"], ["/"],
], ids=["dotdot", "nested-dotdot", "absolute", "linked-dir", "through-link", "dot-and-empty", "parent-dir", "root"])
def test_a_tampered_manifest_cannot_delete_anything_outside(engine, built, tmp_path, entries):
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "link_to_outside").symlink_to(outside, target_is_directory=True)
    files = [e.replace("{abs}", str(outside / "victim.txt")) for e in entries]
    (out / MANIFEST).write_text(json.dumps({"files": files}), encoding="utf-8")
    _export(engine, out)
    assert _snapshot(outside) == before
    assert (out / "data.jsonl").is_file()


@pytest.mark.parametrize("manifest", ['{"files": [5, null, {"a": 1}]}', '{"files": "data.jsonl"}', "{not json",
                                      '["data.jsonl"]', '{"files": ["a\\u0000b"]}'],
                         ids=["not-names", "a-string", "not-json", "a-list", "nul"])
def test_a_damaged_manifest_is_an_error_or_ignored_never_a_traceback(engine, built, tmp_path, manifest):
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "d").write_text("keep", encoding="utf-8")  # 'data.jsonl' iterated as letters must not remove 'd'
    (out / MANIFEST).write_text(manifest, encoding="utf-8")
    try:
        _export(engine, out)
    except ExportError as exc:
        assert "\n" not in str(exc) and MANIFEST in str(exc)
    assert _snapshot(outside) == before
    assert (out / "d").read_text(encoding="utf-8") == "keep"


FORMATS = [("jsonl", None), ("jsonl", (0.5, 0.5)), ("parquet", None), ("parquet", (0.5, 0.5)), ("sft", None),
           ("dpo", None), ("prm", None), ("hf", None), ("hf", (0.5, 0.5))]


@pytest.mark.parametrize("fmt,splits", FORMATS, ids=[f"{f}-{'splits' if s else 'one'}" for f, s in FORMATS])
def test_links_planted_under_the_names_an_export_writes_are_replaced_not_followed(engine, built, tmp_path, fmt,
                                                                                 splits):
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    # a first export tells us every name this format writes (files and split folders)
    probe = tmp_path / "probe"
    _export(engine, probe, fmt=fmt, splits=splits)
    names = [p.name for p in probe.iterdir()]
    out = tmp_path / "ds"
    out.mkdir()
    for name in names:  # each one a link to the outside: a file link, or a folder link for split folders
        target = outside / ("train" if (probe / name).is_dir() else "victim.txt")
        (out / name).symlink_to(target, target_is_directory=target.is_dir())
    _export(engine, out, fmt=fmt, splits=splits)
    assert _snapshot(outside) == before, "the export wrote through a planted link"
    for name in names:
        assert not (out / name).is_symlink(), f"{name} is still a link"
    assert sorted(p.name for p in out.iterdir()) == sorted(names)


def test_an_export_into_a_folder_reached_through_a_link_stays_inside_it(engine, built, tmp_path):
    """The folder itself may be a link the user chose: the export lands in its target and nowhere else."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    _export(engine, link)
    assert (real / "data.jsonl").is_file() and _snapshot(outside) == before
    assert not [n for n in os.listdir(tmp_path) if n not in ("link", "outside", "real") and not n.startswith("test.db")]
