"""The web app under cProfile, one profile per server process: a benchmark-only uvicorn factory, never
part of the product.

    CLINREASON_DB=... CLINREASON_PROJECT=default CLINREASON_CONFIG=clinreason.toml \\
    CLINREASON_SERVER_PROFILE=DIR python -m uvicorn --app-dir benchmarks --factory --workers 2 \\
        profiled_server:app

(`bench_scale.py --server-profile DIR` starts it that way instead of `clinreason serve`.) Each process
profiles every thread it runs (the event loop and the worker threads sync endpoints run in: cProfile is
per thread, so each thread gets a profiler of its own, enabled on its first profiled call). On SIGUSR2 it
writes DIR/server-<pid>.prof (all threads merged; read it with pstats, or run this file on DIR) and
DIR/server-<pid>.json: how long the write transactions (`store.db.transaction`) waited for this
process's write turn (the FairLock), how long BEGIN IMMEDIATE then waited for SQLite's file lock (the other
processes' writers: SQLite's busy handler sleeps and polls), and how long the turn was held once taken
(the transaction's body, and its COMMIT), then touches DIR/server-<pid>.done. SIGUSR1 starts both afresh (the benchmark sends it
before each phase, SIGUSR2 after it). Wall times under cProfile are inflated; compare ratios. With
CLINREASON_SERVER_PROFILE_TURNS_ONLY=1 only the write turns are timed (no cProfile, no overhead to speak of).
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_turns: dict[str, list[float]] = {"wait_turn": [], "wait_begin": [], "body": [], "commit": []}
_reset = threading.Event()
_dump = threading.Event()


def _start_profiling(*_: Any) -> None:
    """The threading.setprofile hook: the thread's first event swaps in a C profiler of its own."""
    prof = cProfile.Profile()
    with _lock:
        _profiles.append(prof)
    prof.enable()


class _Holder:
    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


def _write(out: Path) -> None:
    merged: pstats.Stats | None = None
    with _lock:
        profiles = list(_profiles)
        turns = {k: list(v) for k, v in _turns.items()}
    for prof in profiles:
        prof.snapshot_stats()  # reads what was collected; the profiler of another thread stays enabled
        if not prof.stats:  # type: ignore[attr-defined]
            continue  # a thread that ran nothing profiled since the last reset
        stats = _Holder(dict(prof.stats))  # type: ignore[attr-defined]
        if merged is None:
            merged = pstats.Stats(stats)  # type: ignore[arg-type]
        else:
            merged.add(stats)  # type: ignore[arg-type]
    pid = os.getpid()
    if merged is not None:
        merged.dump_stats(str(out / f"server-{pid}.prof.tmp"))
        os.replace(out / f"server-{pid}.prof.tmp", out / f"server-{pid}.prof")
    (out / f"server-{pid}.json").write_text(json.dumps(turns), encoding="utf-8")


def _writer(out: Path) -> None:
    while True:
        time.sleep(0.1)
        if _reset.is_set():
            _reset.clear()
            with _lock:
                for prof in _profiles:
                    prof.clear()
                for v in _turns.values():
                    v.clear()
        if _dump.is_set():
            _dump.clear()
            try:
                _write(out)
            except Exception as exc:  # noqa: BLE001 - a benchmark aid: say so and go on
                print(f"profiled_server: could not write the profile: {exc!r}", file=sys.stderr)
            (out / f"server-{os.getpid()}.done").touch()


def _timed_transactions() -> None:
    """`store.db.transaction` again, with the time spent waiting for the write turn, waiting in BEGIN
    IMMEDIATE and holding the turn recorded (the same code path, only clocks around it)."""
    from clinreason.store import db

    @contextmanager
    def transaction(engine: Any) -> Iterator[Any]:
        t0 = time.perf_counter()
        with db.write_coordinator(engine):
            t1 = time.perf_counter()
            with engine.connect() as conn:  # engine.begin(), spelled out to time the COMMIT on its own
                trans = conn.begin()
                t2 = time.perf_counter()
                try:
                    yield conn
                except BaseException:
                    trans.rollback()
                    raise
                t3 = time.perf_counter()
                trans.commit()
                t4 = time.perf_counter()
        with _lock:
            _turns["wait_turn"].append(t1 - t0)
            _turns["wait_begin"].append(t2 - t1)
            _turns["body"].append(t3 - t2)
            _turns["commit"].append(t4 - t3)

    db.transaction = transaction  # type: ignore[assignment]


def _timed_requests(inner: Any) -> Any:
    """An ASGI wrapper: each request's time in this process, from the app being called to the last body
    sent, as request:next, request:submit or request:other."""

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        path = scope.get("path", "")
        kind = "request:next" if path.endswith("/queue/next") else (
            "request:submit" if path.endswith("/review") else "request:other")
        t0 = time.perf_counter()
        try:
            await inner(scope, receive, send)
        finally:
            with _lock:
                _turns.setdefault(kind, []).append(time.perf_counter() - t0)

    return timed


def app() -> Any:
    """The uvicorn factory: `app_from_environment`, profiled."""
    out = Path(os.environ["CLINREASON_SERVER_PROFILE"])
    out.mkdir(parents=True, exist_ok=True)
    _timed_transactions()
    from clinreason.web.app import app_from_environment

    web_app = _timed_requests(app_from_environment())
    if os.environ.get("CLINREASON_BENCH_SWITCH_INTERVAL"):  # an experiment: the GIL's switch interval, seconds
        sys.setswitchinterval(float(os.environ["CLINREASON_BENCH_SWITCH_INTERVAL"]))
    signal.signal(signal.SIGUSR1, lambda *_: _reset.set())
    signal.signal(signal.SIGUSR2, lambda *_: _dump.set())
    if os.environ.get("CLINREASON_SERVER_PROFILE_TURNS_ONLY") != "1":  # "1": time the write turns, no cProfile
        threading.setprofile(_start_profiling)
        _start_profiling()  # this thread: the event loop's
    threading.Thread(target=_writer, args=(out,), daemon=True, name="profile-writer").start()
    return web_app


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(directory: Path, *, top: int = 40, sort: str = "cumulative") -> str:
    """The processes' profiles merged, and the write turns' waits, as text."""
    import io

    lines: list[str] = []
    turns: dict[str, list[float]] = {}
    for f in sorted(directory.glob("server-*.json")):
        for k, v in json.loads(f.read_text(encoding="utf-8")).items():
            turns.setdefault(k, []).extend(v)
    n = len(turns.get("body", []))
    if n:
        lines.append(f"write transactions: {n}")
    for k in ("wait_turn", "wait_begin", "body", "commit", "request:next", "request:submit", "request:other"):
        v = turns.get(k) or []
        if v:
            lines.append(f"  {k:14s} n {len(v):5d}  total {sum(v):8.2f} s  mean {sum(v) / len(v) * 1000:7.2f} ms  "
                         f"p50 {_percentile(v, .5) * 1000:7.2f} ms  p95 {_percentile(v, .95) * 1000:7.2f} ms  "
                         f"max {max(v) * 1000:7.1f} ms")
    profiles = sorted(directory.glob("server-*.prof"))
    if profiles:
        buf = io.StringIO()
        stats = pstats.Stats(*map(str, profiles), stream=buf)
        stats.sort_stats(sort).print_stats(top)
        lines.append(buf.getvalue())
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="print the profiles and write turns a profiled server wrote")
    parser.add_argument("directory")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative")
    args = parser.parse_args()
    print(summary(Path(args.directory), top=args.top, sort=args.sort))
