"""The embedded model (SmolLM2-135M via llama-cpp-python), no network: the plumbing is real."""

from __future__ import annotations

import json

import pytest

from clinreason.demo import samples_dir
from clinreason.testing.helpers import cli, cli_env

pytestmark = pytest.mark.local_model


@pytest.fixture(autouse=True)
def _needs_llama():
    pytest.importorskip("llama_cpp", reason="the `local` extra (llama-cpp-python) is not installed")


def test_generate_five_medqa_items_with_the_embedded_model(tmp_path):
    env = cli_env(tmp_path / "c.db", None)
    env.pop("CLINREASON_LLM_BASE_URL", None)
    assert cli(["init"], env, tmp_path).returncode == 0
    assert cli(["import", str(samples_dir() / "medqa_sample.jsonl")], env, tmp_path).returncode == 0
    out = cli(["generate", "--limit", "5", "--json"], env, tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["stored"] == 5 and report["model"].startswith("SmolLM2-135M")
    import sqlite3

    rows = sqlite3.connect(tmp_path / "c.db").execute(
        "select steps, final_answer, parse_status, raw_output, completion_tokens, model from rationales").fetchall()
    assert len(rows) == 5
    for steps, final, status, raw, tokens, model in rows:
        assert status == "ok" and len(json.loads(steps)) >= 1
        assert json.loads(final)[0] in "ABCD" and raw and tokens > 0 and "SmolLM2" in model
    status = json.loads(cli(["status", "--json"], env, tmp_path).stdout)
    assert status["rationales"] == 5 and any("SmolLM2" in m for m in status["by_model"])
