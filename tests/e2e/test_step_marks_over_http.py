"""Step-level verification over the real HTTP API: `clinreason serve --worker` in a subprocess, the fake
OpenAI-compatible server in another, a reviewer as an HTTP client.

The reviewer marks step 2 of every first draft `factual_error` / `major` with a note, and accepts it on
the scores: consensus sends the version back anyway (a marked step needs revision). The regeneration
request the model received carries step 2's text and the note; the fake model repeats its text, so the
new version fails the `marked_steps_revised` check (a hint, not a block); the reviewer accepts v2 with
every step marked ok. The PRM export lists v1 with step 2 labelled `error` and v2, accepted, with every
step `ok`. Bad marks are 422s naming the field, and store nothing."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from clinreason.testing.helpers import (
    api_client,
    cli,
    cli_env,
    fake_server_process,
    read_request_log,
    serving,
    write_synthetic_bank,
)

N = 4
GOOD = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 4, "clinical_value": 4}
PASSWORD = "a-long-test-password-1"


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "steps.db"
    env = cli_env(db, None)
    (tmp_path / "clinreason.toml").write_text("[review]\noverlap = 1\n[generate]\nmax_auto_retries = 0\n")
    assert cli(["init"], env, tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", N, seed=11)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    for name, role in (("ana", "reviewer"), ("boss", "admin")):
        out = cli(["users", "add", name, "--role", role, "--password-stdin"], env, tmp_path, input=PASSWORD + "\n")
        assert out.returncode == 0, out.stderr
    log = tmp_path / "llm.jsonl"
    with fake_server_process(log=log, latency=0.01) as url, \
            serving(cli_env(db, url), tmp_path, extra=["--worker"], log=tmp_path / "serve.log", ready="/login",
                    stop_timeout=30) as (base, _):
        yield base, log, tmp_path, env


def _login(base: str, name: str) -> httpx.Client:
    return api_client(base, name, PASSWORD)


def _next(client: httpx.Client, deadline: float) -> dict | None:
    while time.monotonic() < deadline:
        r = client.get("/api/queue/next")
        if r.status_code == 200:
            return r.json()
        time.sleep(0.2)
    return None


def test_a_marked_step_reaches_the_regeneration_prompt_and_the_prm_export(served):
    base, log, tmp, env = served
    ana, boss = _login(base, "ana"), _login(base, "boss")
    deadline = time.monotonic() + 240
    notes: dict[str, str] = {}
    step2: dict[str, str] = {}
    first = _next(ana, deadline)
    assert first is not None, "no draft reached the review queue"

    # a bad mark is a 422 naming the field, and nothing is stored
    aid = first["assignment_id"]
    n_steps = len(first["rationale"]["steps"])
    for marks, field in (([{"step": n_steps + 1, "verdict": "ok"}], "steps[0].step"),
                         ([{"step": 1, "verdict": "error", "category": "made_up", "severity": "major", "note": "x"}],
                          "steps[0].category"),
                         ([{"step": 1, "verdict": "ok"}, {"step": 2, "verdict": "error", "category": "unsafe",
                                                          "severity": "critical"}], "steps[1].note")):
        bad = ana.post(f"/api/assignments/{aid}/review", json={"verdict": "accept", "scores": GOOD, "steps": marks})
        assert bad.status_code == 422, bad.text
        assert ".".join(bad.json()["detail"][0]["loc"][1:]) == field, bad.json()
    assert boss.get(f"/api/items/{first['item']['id']}").json()["reviews"] == []

    accepted_v2 = 0
    a = first
    while a is not None and accepted_v2 < N:
        item_id, version = a["item"]["id"], a["rationale"]["version"]
        steps = a["rationale"]["steps"]
        assert len(steps) >= 2, steps
        if version == 1:
            idx = re.search(r"case (\d+)", a["item"]["question"]).group(1)
            notes[item_id] = f"the mechanism in step 2 of case {idx} is wrong"
            step2[item_id] = steps[1]
            body = {"verdict": "accept", "scores": GOOD,
                    "steps": [{"step": 1, "verdict": "ok"},
                              {"step": 2, "verdict": "error", "category": "factual_error", "severity": "major",
                               "note": notes[item_id]}]}
        else:
            body = {"verdict": "accept", "scores": GOOD,
                    "steps": [{"step": i + 1, "verdict": "ok"} for i in range(len(steps))]}
        sent = ana.post(f"/api/assignments/{a['assignment_id']}/review", json=body)
        assert sent.status_code == 201, sent.text
        if version > 1:
            accepted_v2 += 1
        a = _next(ana, deadline) if accepted_v2 < N else None
    assert accepted_v2 == N, (boss.get("/api/status").json(), (tmp / "serve.log").read_text()[-3000:])

    # every item: v1 sent back for its marked step, v2 accepted; v2 screened with marked_steps_revised
    for item_id in notes:
        h = boss.get(f"/api/items/{item_id}").json()
        assert h["state"] == "accepted", h["state"]
        assert [v["version"] for v in h["versions"]] == [1, 2]
        marks = [r["steps"] for r in h["reviews"] if r["version"] == 1][0]
        assert {"step": 2, "verdict": "error", "category": "factual_error", "severity": "major",
                "note": notes[item_id]} in marks
        strike = [e for e in h["events"] if e["kind"] == "item.strike"]
        assert len(strike) == 1 and "step 2" in strike[0]["detail"]["reason"]
        revised = [c for c in h["checks"] if c["name"] == "marked_steps_revised"]
        assert [(c["version"], c["passed"], c["blocking"]) for c in revised] == [(2, False, False)]
        assert f"step 2: {step2[item_id]}" in revised[0]["detail"]

    # the regeneration prompt carried step 2's text, its category, severity and note
    regen = [r for r in read_request_log(log) if r["path"].endswith("/chat/completions")
             and "Previous version" in r["messages"][-1]["content"]]
    assert len(regen) == N
    for r in regen:
        text = r["messages"][-1]["content"]
        item_id = r["idempotency_key"].split(":")[0]
        assert f"Step 2: {step2[item_id]}" in text
        assert notes[item_id] in text and "factual_error" in text and "severity major" in text
        assert "Keep every unmarked step as it is" in text

    # `clinreason history` reads the same at step level: the marks each version received, what changed
    some = next(iter(notes))
    told = cli(["history", some], env, tmp)
    assert told.returncode == 0, told.stderr
    assert f"step 2: error, factual_error, major: {notes[some]}" in told.stdout
    assert "steps vs version 1: none changed" in told.stdout  # the fake model repeated its text
    story = json.loads(cli(["history", some, "--json"], env, tmp).stdout)
    v1 = story["step_history"][0]
    assert v1["version"] == 1 and [m["step"] for m in v1["steps"][1]["marks"]] == [2]
    assert story["step_history"][1]["changes"] == {"changed": [], "added": [], "removed": []}

    # PRM: v1 has step 2 labelled error (with its mark), v2 accepted with every step ok
    out = tmp / "prm"
    exported = cli(["export", str(out), "--format", "prm"], env, tmp)
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines() if line]
    by_key = {(row["item_id"], row["version"]): row for row in rows}
    for item_id in notes:
        v1, v2 = by_key[(item_id, 1)], by_key[(item_id, 2)]
        assert v1["accepted"] is False and v2["accepted"] is True
        assert v1["steps"][1]["label"] == "error" and v1["steps"][1]["text"] == step2[item_id]
        assert v1["steps"][1]["marks"] == [{"category": "factual_error", "severity": "major", "note": notes[item_id]}]
        assert v1["steps"][0]["label"] == "ok"
        assert all(s["label"] == "ok" for s in v2["steps"]) and v2["steps"]
