"""Import throughput and peak memory.

    python benchmarks/bench_import.py [--items 200000]

Measures, each import in a fresh subprocess on a fresh SQLite database:
  * the 6,811-question CMExam XLSX (../shared/data/cmexam; skipped with a note if absent)
  * a synthetic JSONL of N items (default 200,000) and one of N/10, to show memory stays flat
Beside each figure it prints a baseline measured in the same run: the time to merely parse the same
file (json.loads per line / openpyxl row iteration) without validation or database, so the ratio says
what clinreason's own work costs, independent of how fast this machine is today.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from clinreason.testing.helpers import write_synthetic_bank

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

_CHILD = r"""
import resource, sys, time, json
from pathlib import Path
from clinreason.store import db
from clinreason.store import projects as store_projects
from clinreason.config import ProjectConfig
from clinreason.stages.ingest import import_path
path, fmt, dbfile = sys.argv[1], sys.argv[2], sys.argv[3]
engine = db.make_engine(dbfile); db.upgrade(engine)
pc = ProjectConfig()
with engine.begin() as conn:
    store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}), rubric=pc.rubric)
t = time.perf_counter()
s = import_path(engine, project="default", path=Path(path), fmt=fmt)
dt = time.perf_counter() - t
print(json.dumps({"added": s.added, "records": s.records, "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_PARSE_ONLY = r"""
import json, sys, time, resource
path, fmt = sys.argv[1], sys.argv[2]
t = time.perf_counter(); n = 0
if fmt == "cmexam":
    import openpyxl
    wb = openpyxl.load_workbook(path, read_only=True)
    for row in wb[wb.sheetnames[0]].iter_rows(values_only=True):
        n += 1
else:
    with open(path, "rb") as fh:
        for line in fh:
            json.loads(line); n += 1
print(json.dumps({"records": n, "seconds": time.perf_counter() - t}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(label: str, path: Path, fmt: str, tmp: Path) -> dict:
    dbfile = tmp / f"{label}.db"
    result = run(_CHILD, str(path), fmt, str(dbfile))
    base = run(_PARSE_ONLY, str(path), "cmexam" if fmt == "cmexam" else "jsonl")
    rate = result["added"] / result["seconds"]
    base_rate = base["records"] / base["seconds"]
    print(f"{label:28s} {result['added']:>8,d} items  {result['seconds']:7.2f} s  {rate:9,.0f} items/s  "
          f"peak {result['peak_rss_mb']:6.1f} MB  | parse-only baseline {base_rate:10,.0f} rec/s  "
          f"(import/parse-only speed ratio {rate / base_rate:.3f})")
    return {**result, "rate": rate}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200_000)
    args = ap.parse_args()
    print(f"peak memory of a bare interpreter importing clinreason: "
          f"{run('import resource, json, clinreason.stages.ingest; print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024))'):.1f} MB")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cm = SHARED / "cmexam" / "val.xlsx"
        if cm.exists():
            bench("cmexam (6,811, xlsx)", cm, "cmexam", tmp)
        else:
            print(f"cmexam: skipped ({cm} absent)")
        small_n = max(args.items // 10, 1)
        small, big = tmp / "small.jsonl", tmp / "big.jsonl"
        write_synthetic_bank(small, small_n)
        write_synthetic_bank(big, args.items)
        print(f"synthetic files: {small.stat().st_size / 1e6:.1f} MB and {big.stat().st_size / 1e6:.1f} MB")
        a = bench(f"synthetic jsonl ({small_n:,})", small, "jsonl", tmp)
        b = bench(f"synthetic jsonl ({args.items:,})", big, "jsonl", tmp)
        print(f"memory flatness: peak at {args.items:,} items / peak at {small_n:,} items = "
              f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f} (1.0 = flat; the input grew 10x)")


if __name__ == "__main__":
    main()
