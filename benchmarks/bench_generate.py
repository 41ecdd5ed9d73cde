"""Drafting throughput against a fake OpenAI-compatible server with fixed latency.

    python benchmarks/bench_generate.py [--items 2000] [--concurrency 64] [--latency 0.2] [--repeat 1] [--kills 3]
                                        [--json]

The server runs in its own process; clinreason drafts in this one (SQLite). The ceiling is
concurrency / latency requests per second (64 / 0.2 s = 320/s): the script prints achieved/ceiling as
a ratio (target >= 0.90) and clinreason's own CPU time per item (what decides how far one machine
scales), next to a bare aiohttp client measured against the same server in the same run (what the
machine allows at all: on a busy machine both fall). --repeat N measures N times, each on a fresh
database. Figures (benchmarks/_report.py; --json prints them as JSON lines): drafted req/s against the
ceiling (limit 0.90 of it) and against the bare client's rate. With --kills K (default 3; 0 skips it) it then repeats the run killing `clinreason generate`
with SIGKILL at K random moments and reports items, versions and requests sent twice (must be
<= K x concurrency: only requests in flight at a kill; what had arrived is in the run's journal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report  # noqa: E402

from clinreason.config import ProjectConfig  # noqa: E402
from clinreason.llm.factory import make_backend  # noqa: E402
from clinreason.stages.ingest import import_path  # noqa: E402
from clinreason.stages.runner import DRAFT, run_llm_stage  # noqa: E402
from clinreason.store import db as dbm  # noqa: E402
from clinreason.store import projects as store_projects  # noqa: E402
from clinreason.testing.helpers import cli, cli_env, fake_server_process, read_request_log, write_synthetic_bank  # noqa: E402, I001


async def _bare_client(url: str, n: int, concurrency: int) -> float:
    """The same number of requests from a bare aiohttp client (no database, no parsing): what this
    machine and this fake server allow at all, measured in the same run."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Question: x\nGold answer: B"}]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one() -> None:
            async with gate, session.post(f"{url}/chat/completions", json=body) as response:
                await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - started)


def throughput(tmp: Path, items: int, concurrency: int, latency: float, out: Report) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    bank = write_synthetic_bank(tmp / "bank.jsonl", items)
    engine = dbm.make_engine(str(tmp / "t.db"))
    dbm.upgrade(engine)
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", config={}, rubric=pc.rubric)
    import_path(engine, project="default", path=bank, fmt="jsonl")
    with fake_server_process(log=tmp / "log.jsonl", latency=latency) as url:
        backend = make_backend(backend="openai", base_url=url, model="fake-model", concurrency=concurrency)

        async def go():
            try:
                return await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT,
                                           concurrency=concurrency)
            finally:
                await backend.aclose()

        report = asyncio.run(go())
        bare = asyncio.run(_bare_client(url, items, concurrency))
    ceiling = concurrency / latency
    achieved = report.stored / report.wall_seconds
    out.note(f"drafted {report.stored} items in {report.wall_seconds:.2f} s at concurrency {concurrency}, "
             f"server latency {latency * 1000:.0f} ms; ceiling {ceiling:.0f} req/s")
    out.figure("generate_req_per_s_vs_0.9x_ceiling", value=achieved, limit=0.9 * ceiling, higher_is_better=True,
               unit="req/s")
    out.figure("generate_share_of_ceiling", value=achieved / ceiling, limit=0.90, higher_is_better=True)
    out.note(f"bare aiohttp client, same server, same run: {bare:7.1f} req/s (ratio {bare / ceiling:.3f})")
    out.figure("generate_req_per_s_vs_bare_client", value=achieved, limit=bare, higher_is_better=True, unit="req/s")
    out.note(f"clinreason CPU per item: {report.cpu_seconds / report.stored * 1000:.2f} ms "
             f"(=> one core sustains ~{report.stored / report.cpu_seconds:.0f} items/s)")


def kills(tmp: Path, items: int, concurrency: int, latency: float, n_kills: int, out: Report) -> None:
    db = tmp / "k.db"
    write_synthetic_bank(tmp / "kbank.jsonl", items, seed=9)
    env0 = cli_env(db, None)
    cli(["init"], env0, tmp)
    cli(["import", "kbank.jsonl"], env0, tmp)
    log = tmp / "klog.jsonl"
    rng = random.Random(2026)
    with fake_server_process(log=log, latency=latency) as url:
        env = cli_env(db, url)
        for k in range(n_kills):
            proc = subprocess.Popen([sys.executable, "-m", "clinreason.cli", "generate", "--concurrency",
                                     str(concurrency)], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            delay = rng.uniform(1.0, 4.0)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            out.note(f"kill {k + 1}: SIGKILL after {delay:.1f} s")
        final = json.loads(cli(["generate", "--concurrency", str(concurrency), "--json"], env, tmp).stdout)
    out.note(f"the run after the last kill stored {final['recovered']} answers from the dead run's journal "
             f"before claiming, and drafted {final['stored']}")
    status = json.loads(cli(["status", "--json"], env0, tmp).stdout)
    per_key = Counter(r["idempotency_key"] for r in read_request_log(log) if r["path"].endswith("/chat/completions"))
    repeated = sum(c - 1 for c in per_key.values() if c > 1)
    out.note(f"after {n_kills} kills: items {status['items']}, rationale versions {status['rationales']}, "
             f"distinct requests {len(per_key)}, requests sent twice {repeated} "
             f"(limit {n_kills} x {concurrency} = {n_kills * concurrency})")
    ok = status["items"] == status["rationales"] == items and repeated <= n_kills * concurrency
    left = list((tmp / "k.db.responses").glob("*.jsonl"))
    out.note(f"journal segments left behind: {len(left)}")
    out.figure("generate_requests_sent_twice_after_kills", value=repeated, limit=n_kills * concurrency,
               higher_is_better=False)
    out.note("PASS" if ok and not left else "FAIL")


def main() -> None:
    report = Report.from_argv()
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--kills", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for run in range(args.repeat):
            throughput(Path(d) / f"run{run}", args.items, args.concurrency, args.latency, report)
        if args.kills:
            kills(Path(d), args.items, args.concurrency, args.latency, args.kills, report)


if __name__ == "__main__":
    main()
