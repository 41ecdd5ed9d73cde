"""The whole loop over the real HTTP API: `clinreason serve` (with its worker) in a subprocess, a fake
OpenAI-compatible server in another, scripted reviewers and an adjudicator as HTTP clients.

30 items: some accepted at once, some edited by an expert, some sent back for guided regeneration with
comments, some disagreed on (adjudicator accepts), some rejected round after round until the strikes run
out (adjudicator excludes). Checks: every item ends accepted or excluded; every regeneration prompt the
model received carries the reviewers' comments and the failing dimensions; strikes escalate exactly at
max_strikes; each item's event log replays to its final state."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from clinreason.domain.lifecycle import replay
from clinreason.testing.helpers import (
    api_client,
    cli,
    cli_env,
    fake_server_process,
    read_request_log,
    serving,
    write_synthetic_bank,
)

N, MAX_STRIKES = 30, 3
GOOD = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 4, "clinical_value": 4}
POOR = {"correctness": 3, "reasoning": 2, "sufficiency": 3, "terminology": 4, "clinical_value": 3}
PASSWORD = "a-long-test-password-1"


def group(idx: int) -> str:
    return ("accept" if idx < 10 else "edit" if idx < 15 else "regenerate" if idx < 22 else "disagree" if idx < 26
            else "strikes")


def script(idx: int, version: int, who: str) -> dict:
    g = group(idx)
    if g == "edit" and version == 1:  # whoever gets the draft first rewrites it
        return {"verdict": "edit", "scores": POOR, "comments": {"reasoning": "rewrote step 2"},
                "edited_text": f"1. Expert-corrected reasoning for case {idx}.\n2. Every option weighed.\nFinal answer: A"}
    if (g == "regenerate" and version == 1) or g == "strikes":
        return {"verdict": "regenerate", "scores": POOR,
                "comments": {"reasoning": f"step 2 of case {idx} skips a distractor",
                             "correctness": f"wrong mechanism in case {idx}"}}
    if g == "disagree" and who == "ben":
        return {"verdict": "regenerate", "scores": POOR, "comments": {"general": "I disagree"}}
    return {"verdict": "accept", "scores": GOOD, "comments": {}}


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "loop.db"
    env = cli_env(db, None)
    (tmp_path / "clinreason.toml").write_text(f"[review]\noverlap = 2\nmax_strikes = {MAX_STRIKES}\n"
                                              "[llm]\nconcurrency = 8\n[generate]\nmax_auto_retries = 1\n")
    assert cli(["init"], env, tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", N, seed=5)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    for name, role in (("ana", "reviewer"), ("ben", "reviewer"), ("cy", "reviewer"), ("judge", "adjudicator"),
                       ("boss", "admin")):
        out = cli(["users", "add", name, "--role", role, "--password-stdin"], env, tmp_path, input=PASSWORD + "\n")
        assert out.returncode == 0, out.stderr
    log = tmp_path / "llm.jsonl"
    with fake_server_process(log=log, latency=0.01) as url, \
            serving(cli_env(db, url), tmp_path, extra=["--worker"], log=tmp_path / "serve.log", ready="/login",
                    stop_timeout=30) as (base, _):
        yield base, log, tmp_path


def _login(base: str, name: str) -> httpx.Client:
    return api_client(base, name, PASSWORD)


def test_thirty_items_through_the_whole_loop(served):
    base, log, tmp = served
    boss = _login(base, "boss")
    stop = threading.Event()
    errors: list[str] = []

    def finished() -> bool:
        s = boss.get("/api/status").json()["by_state"]
        return s["accepted"] + s["excluded"] == N

    def reviewer(name: str) -> None:
        c = _login(base, name)
        while not stop.is_set():
            r = c.get("/api/queue/next")
            if r.status_code == 204:
                time.sleep(0.2)
                continue
            a = r.json()
            idx = int(re.search(r"case (\d+)", a["item"]["question"]).group(1))
            body = script(idx, a["rationale"]["version"], name)
            sent = c.post(f"/api/assignments/{a['assignment_id']}/review", json=body)
            if sent.status_code == 409:  # e.g. a second edit of a version already edited: give it back
                c.post(f"/api/assignments/{a['assignment_id']}/release")
            elif sent.status_code != 201:
                errors.append(f"{name} {sent.status_code} {sent.text[:200]}")

    def adjudicator() -> None:
        c = _login(base, "judge")
        while not stop.is_set():
            for it in c.get("/api/adjudication").json()["items"]:
                idx = int(re.search(r"case (\d+)", it["question"]).group(1))
                if group(idx) == "strikes":
                    body = {"action": "exclude", "reason": "never reached an acceptable rationale"}
                else:
                    versions = c.get(f"/api/items/{it['id']}").json()["versions"]
                    body = {"action": "accept", "rationale_id": versions[-1]["id"], "reason": "sound"}
                r = c.post(f"/api/items/{it['id']}/adjudication", json=body)
                if r.status_code not in (200, 409):
                    errors.append(f"judge {r.status_code} {r.text[:200]}")
            time.sleep(0.3)

    threads = [threading.Thread(target=reviewer, args=(n,)) for n in ("ana", "ben", "cy")]
    threads.append(threading.Thread(target=adjudicator))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and not finished():
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    status = boss.get("/api/status").json()
    assert not errors, errors
    assert status["by_state"]["accepted"] + status["by_state"]["excluded"] == N, (status, (tmp / "serve.log").read_text()[-3000:])

    prompts = [r for r in read_request_log(log) if r["path"].endswith("/chat/completions")]
    regen = [r for r in prompts if "Previous version" in r["messages"][-1]["content"]]
    assert regen, "no guided regeneration reached the model"
    for r in regen:
        text = r["messages"][-1]["content"]
        idx = int(re.search(r"case (\d+)", text).group(1))
        assert group(idx) in ("regenerate", "strikes"), idx
        assert f"step 2 of case {idx} skips a distractor" in text and f"wrong mechanism in case {idx}" in text
        assert "Medical correctness: 3, 3 [needs 5]" in text and "Reasoning structure: 2, 2 [needs 4]" in text
        assert "Reviewer 1" in text and not re.search(r"\b(ana|ben|cy)\b", text)  # anonymised to the model
    per_item = {}
    for r in prompts:
        key = r["idempotency_key"]
        per_item.setdefault(key.split(":")[0], []).append(key)
    judge = _login(base, "judge")
    for item_id in per_item:
        h = judge.get(f"/api/items/{item_id}").json()
        idx = int(re.search(r"case (\d+)", h["question"]).group(1))
        assert replay(h["events"]).value == h["state"]
        expected = {"accept": "accepted", "edit": "accepted", "regenerate": "accepted", "disagree": "accepted",
                    "strikes": "excluded"}[group(idx)]
        assert h["state"] == expected, (idx, h["state"])
        strikes = [e for e in h["events"] if e["kind"] == "item.strike"]
        if group(idx) == "strikes":
            assert len(strikes) == MAX_STRIKES and len(h["versions"]) == MAX_STRIKES
            escalation = [e for e in h["events"] if e["kind"] == "item.transition" and e["after"]["state"] == "escalated"]
            assert len(escalation) == 1 and escalation[0]["detail"]["strikes"] == MAX_STRIKES
        if group(idx) == "edit":
            assert any(v["origin"] == "edited" for v in h["versions"]) and len(strikes) == 1
        if group(idx) == "accept":
            assert len(h["versions"]) == 1 and not strikes
