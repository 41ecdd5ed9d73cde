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
from typing import Any, Iterator

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
    """Run `python -m clinreason.testing.fake_server` in its own process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "clinreason.testing.fake_server", "--port", "0", "--latency",
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


_ZH_WORDS = "患者 发热 咳嗽 胸痛 肾脏 肝脏 心脏 急性 慢性 剂量 感染 病变 神经 动脉 治疗 诊断 查体 升高 降低 双侧 杂音 皮疹".split()


def write_bilingual_bank(path: Path, n: int, *, zh_every: int = 5, seed: int = 7) -> Path:
    """Like :func:`write_synthetic_bank`, with every `zh_every`-th question in Chinese. The fake server
    drafts in English, so those drafts fail the blocking `language` check and go through automatic
    regeneration (`max_auto_retries` times) before they reach the experts, flagged."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            zh = zh_every > 0 and i % zh_every == zh_every - 1
            words = _ZH_WORDS if zh else _WORDS
            sep = "" if zh else " "
            stem = sep.join(rng.choice(words) for _ in range(30)) + f" (case {i})?"
            options = {label: sep.join(rng.choice(words) for _ in range(3)) + f" {label}{i}" for label in "ABCD"}
            fh.write(json.dumps({"question": stem, "options": options, "answer": rng.choice("ABCD"),
                                 "language": "zh" if zh else "en",
                                 "specialty": rng.choice(["cardiology", "nephrology", "neurology"])},
                                ensure_ascii=False) + "\n")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, *, timeout: float = 60.0) -> None:
    """Poll `url` until it answers (any status); raise when `proc` exits first or `timeout` passes."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it answered")
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout} s") from None
            time.sleep(0.05)


def api_client(base: str, username: str, password: str) -> Any:
    """An `httpx.Client` for `base` signed in as `username` (POST /api/login; its bearer token on every request)."""
    import httpx

    token = httpx.post(f"{base}/api/login", json={"username": username, "password": password}).json()["token"]
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def serve_process(env: dict[str, str], cwd: Path, *, port: int, extra: list[str] | None = None,
                  log: Path | None = None) -> subprocess.Popen:
    """`clinreason serve` as a real process on 127.0.0.1:`port` (stdout and stderr to `log`)."""
    out: Any = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "clinreason.cli", "serve", "--port", str(port),
                                 *(extra or [])], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        if log:
            out.close()


@contextmanager
def serving(env: dict[str, str], cwd: Path, *, extra: list[str] | None = None, log: Path | None = None,
            ready: str = "/openapi.json", stop_timeout: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`clinreason serve` on a free port, waited for until `ready` answers; yields (base URL, process) and
    stops it (SIGTERM, then SIGKILL after `stop_timeout`) however the block ends."""
    port = free_port()
    proc = serve_process(env, cwd, port=port, extra=extra, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}{ready}", proc)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
