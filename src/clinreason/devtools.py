"""Helpers shared by the test suite and the benchmarks: synthetic question banks, a fake LLM server in
a subprocess, and running the CLI as a real process (so it can be killed)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_WORDS = ("patient fever cough pain renal hepatic cardiac acute chronic dose infection lesion nerve artery therapy "
          "diagnosis presents with history of examination shows elevated reduced bilateral murmur rash").split()


def write_synthetic_bank(path: Path, n: int, *, seed: int = 7) -> Path:
    """N distinct English multiple-choice questions in the generic JSONL layout."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            stem = " ".join(rng.choice(_WORDS) for _ in range(30)) + f" (case {i})?"
            options = {label: " ".join(rng.choice(_WORDS) for _ in range(3)) + f" {label}{i}" for label in "ABCD"}
            fh.write(json.dumps({"question": stem, "options": options, "answer": rng.choice("ABCD"),
                                 "specialty": rng.choice(["cardiology", "nephrology", "neurology"])}) + "\n")
    return path


@contextmanager
def fake_server_process(*, log: Path, latency: float = 0.0, extra: list[str] | None = None) -> Iterator[str]:
    """Run `python -m clinreason.llm.fake_server` in its own process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "clinreason.llm.fake_server", "--port", "0", "--latency",
                             str(latency), "--log", str(log), *(extra or [])],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = proc.stdout.readline() if proc.stdout else ""
        if "listening on" not in banner:
            raise RuntimeError(f"fake server did not start: {banner!r}")
        yield banner.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cli_env(db: Path, base_url: str | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CLINREASON_DB": f"sqlite:///{db}", "HF_HUB_OFFLINE": "1", **extra}
    if base_url:
        env.update(CLINREASON_LLM_BASE_URL=base_url, CLINREASON_LLM_MODEL="fake-model")
    return env


def cli(args: list[str], env: dict[str, str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clinreason.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, **kw)


def read_request_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
