"""Drafting on Ray Data (`generate --engine ray`) against the native runner, in the same run.

    python benchmarks/bench_ray.py [--items 2000] [--concurrency 64] [--latency 0.2] [--num-cpus N] [--batch-size 16]
                                   [--json]

One fake OpenAI-compatible server (its own process, fixed latency) answers both engines; each drafts the same
bank into a fresh SQLite database of its own (so neither is served from the other's cache). The native runner
goes first, then a local Ray (`ray.init(num_cpus=...)`, started before its clock runs: on a cluster it is
already up) drafts with the same number of requests in flight. The figure is Ray's items/s with the native
runner's as its limit: the ratio says how much of the native throughput Ray Data reaches on this machine. On
one small machine Ray's actors and tasks compete with the driver for the same cores, so below 1 is expected
here; the point of the engine is a cluster, where the drafting runs on many machines.

Skipped (exit 0, with a note) when Ray is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from _report import Report

from clinreason.config import ProjectConfig
from clinreason.llm.factory import make_backend
from clinreason.stages.ingest import import_path
from clinreason.stages.runner import DRAFT, run_llm_stage
from clinreason.store import db as dbm
from clinreason.store import projects as store_projects
from clinreason.testing.helpers import fake_server_process, write_synthetic_bank


def _fresh(tmp: Path, name: str, bank: Path):
    engine = dbm.make_engine(f"sqlite:///{tmp / f'{name}.db'}")
    dbm.upgrade(engine)
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                                   rubric=pc.rubric)
    import_path(engine, project="default", path=bank, fmt="auto")
    return engine, project, pc


def main() -> None:
    report = Report.from_argv()
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch-size", type=int, default=ProjectConfig().generate.ray_batch_size,
                        help="[generate] ray_batch_size: rows per Ray batch")
    args = parser.parse_args()
    if importlib.util.find_spec("ray") is None:
        report.note("bench_ray: skipped, ray is not installed (pip install 'clinreason[cluster]')")
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        bank = write_synthetic_bank(tmp / "bank.jsonl", args.items)
        with fake_server_process(log=tmp / "requests.jsonl", latency=args.latency) as url:
            engine, project, pc = _fresh(tmp, "native", bank)
            pc.llm.base_url, pc.llm.model, pc.llm.concurrency = url, "fake-model", args.concurrency
            backend = make_backend(backend="openai", base_url=url, model="fake-model", concurrency=args.concurrency)

            async def native():
                try:
                    return await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT,
                                               concurrency=args.concurrency, journal_dir=tmp / "native-journal")
                finally:
                    await backend.aclose()

            native_report = asyncio.run(native())
            assert native_report.stored == args.items, native_report.to_dict()
            native_rate = native_report.stored / native_report.wall_seconds

            import ray

            from clinreason.stages.ray_engine import plan_from_config, run_ray_stage

            started = time.perf_counter()
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")
            init_seconds = time.perf_counter() - started
            try:
                engine2, project2, pc2 = _fresh(tmp, "ray", bank)
                pc2.llm.base_url, pc2.llm.model, pc2.llm.concurrency = url, "fake-model", args.concurrency
                pc2.generate.ray_batch_size = args.batch_size
                ray_report = run_ray_stage(engine2, project=project2, pc=pc2, plan=plan_from_config(pc2, api_key=None),
                                           kind=DRAFT, journal_dir=tmp / "ray-journal")
            finally:
                ray.shutdown()
    assert ray_report.stored == args.items, ray_report.to_dict()
    ray_rate = ray_report.stored / ray_report.wall_seconds
    ceiling = args.concurrency / args.latency
    report.note(f"{args.items} items, {args.concurrency} in flight, {args.latency * 1000:.0f} ms server latency, "
                f"ceiling {ceiling:.0f}/s; native {native_report.wall_seconds:.1f} s, "
                f"Ray {ray_report.wall_seconds:.1f} s (+ {init_seconds:.1f} s ray.init, num_cpus={args.num_cpus}, "
                f"batches of {args.batch_size}), "
                f"driver CPU native {native_report.cpu_seconds:.1f} s / Ray {ray_report.cpu_seconds:.1f} s")
    report.figure("native_items_per_s", value=native_rate, limit=ceiling, higher_is_better=True, unit="item/s")
    report.figure("ray_items_per_s_vs_native", value=ray_rate, limit=native_rate, higher_is_better=True,
                  unit="item/s")


if __name__ == "__main__":
    sys.exit(main())
