"""Import throughput and peak memory.

    python benchmarks/bench_import.py [--items 200000] [--pg-url URL] [--json]

Measures, each import in a fresh subprocess on a fresh database:
  * the 6,811-question CMExam XLSX (../shared/data/cmexam; skipped with a note if absent)
  * a synthetic JSONL of N items (default 200,000) and one of N/10, to show memory stays flat
  * the CPU seconds of the importing process and, for a file read in a second process, of that reader
  * with --pg-url (or CLINREASON_TEST_PG_URL), the N-item file into PostgreSQL too (a database of its own,
    `clinreason_bench_import`, created and dropped in that cluster)
Figures, each beside its limit: items/s into SQLite (limit 20,000) and PostgreSQL (limit 10,000); the
SQLite rate against parsing the same file with the same JSON library and no database, measured in the
same run (json.loads per line); peak RSS at N items over peak at N/10 (limit 1.2: flat).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report  # noqa: E402

from clinreason.testing.helpers import write_synthetic_bank  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

_CHILD = r"""
import os, resource, sys, time, json
from pathlib import Path
from clinreason.store import db
from clinreason.store import projects as store_projects
from clinreason.config import ProjectConfig
from clinreason.stages.ingest import import_path
path, fmt, dbfile = sys.argv[1], sys.argv[2], sys.argv[3]
engine = db.make_engine(dbfile); db.upgrade(engine)  # a path, or a PostgreSQL URL
pc = ProjectConfig()
with engine.begin() as conn:
    store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}), rubric=pc.rubric)
t, cpu, kids = time.perf_counter(), time.process_time(), os.times()
s = import_path(engine, project="default", path=Path(path), fmt=fmt)
dt, cpu, after = time.perf_counter() - t, time.process_time() - cpu, os.times()
print(json.dumps({"added": s.added, "records": s.records, "seconds": dt, "cpu_seconds": cpu,
                  "reader_cpu_seconds": after.children_user + after.children_system - kids.children_user
                  - kids.children_system,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "reader_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
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


def bench(label: str, path: Path, fmt: str, target: str, report: Report) -> dict:
    result = run(_CHILD, str(path), fmt, target)
    rate = result["added"] / result["seconds"]
    report.note(f"{label:32s} {result['added']:>8,d} items  {result['seconds']:7.2f} s  {rate:9,.0f} items/s  "
                f"peak {result['peak_rss_mb']:6.1f} MB  (this process's CPU {result['cpu_seconds']:.2f} s: "
                f"{result['added'] / result['cpu_seconds']:,.0f} items per CPU second"
                + (f"; the reader process's CPU {result['reader_cpu_seconds']:.2f} s, peak "
                   f"{result['reader_peak_rss_mb']:.1f} MB" if result.get("reader_cpu_seconds") else "") + ")")
    return {**result, "rate": rate}


def parse_only(path: Path, fmt: str) -> float:
    base = run(_PARSE_ONLY, str(path), fmt)
    return base["records"] / base["seconds"]


def _pg_database(url: str, name: str, *, drop_only: bool = False) -> str:
    """`url`'s cluster with a fresh database `name` (dropped first); returns that database's URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from clinreason.store.db import normalise_url

    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        if not drop_only:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(normalise_url(url)).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    report = Report.from_argv()
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--pg-url", default=os.environ.get("CLINREASON_TEST_PG_URL"),
                    help="a PostgreSQL cluster to import into as well (default: $CLINREASON_TEST_PG_URL)")
    ap.add_argument("--no-cmexam", action="store_true", help="skip the CMExam XLSX")
    args = ap.parse_args()
    bare = run('import resource, json, clinreason.stages.ingest; '
               'print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024))')
    report.note(f"peak memory of a bare interpreter importing clinreason: {bare:.1f} MB")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cm = SHARED / "cmexam" / "val.xlsx"
        if cm.exists() and not args.no_cmexam:
            r = bench("cmexam (6,811, xlsx)", cm, "cmexam", str(tmp / "cmexam.db"), report)
            report.figure("import_cmexam_xlsx_vs_openpyxl_rows", value=r["rate"], limit=parse_only(cm, "cmexam"),
                          higher_is_better=True, unit="item/s")
        else:
            report.note(f"cmexam: skipped ({cm} absent or --no-cmexam)")
        small_n = max(args.items // 10, 1)
        small, big = tmp / "small.jsonl", tmp / "big.jsonl"
        write_synthetic_bank(small, small_n)
        write_synthetic_bank(big, args.items)
        report.note(f"synthetic files: {small.stat().st_size / 1e6:.1f} MB and {big.stat().st_size / 1e6:.1f} MB")
        a = bench(f"synthetic jsonl ({small_n:,}) sqlite", small, "jsonl", str(tmp / "small.db"), report)
        b = bench(f"synthetic jsonl ({args.items:,}) sqlite", big, "jsonl", str(tmp / "big.db"), report)
        base_rate = parse_only(big, "jsonl")
        report.note(f"parse-only baseline (json.loads per line, no database): {base_rate:,.0f} records/s")
        report.figure("import_sqlite_items_per_s", value=b["rate"], limit=20_000, higher_is_better=True,
                      unit="item/s")
        report.figure("import_sqlite_vs_parse_only_rate", value=b["rate"], limit=base_rate, higher_is_better=True,
                      unit="item/s")
        report.figure("import_peak_rss_ratio_10x_input", value=b["peak_rss_mb"] / a["peak_rss_mb"], limit=1.2,
                      higher_is_better=False)
        if args.pg_url:
            name = "clinreason_bench_import"
            target = _pg_database(args.pg_url, name)
            try:
                p = bench(f"synthetic jsonl ({args.items:,}) postgresql", big, "jsonl", target, report)
            finally:
                _pg_database(args.pg_url, name, drop_only=True)
            report.figure("import_postgresql_items_per_s", value=p["rate"], limit=10_000, higher_is_better=True,
                          unit="item/s")
        else:
            report.note("postgresql: skipped (pass --pg-url or set CLINREASON_TEST_PG_URL)")


if __name__ == "__main__":
    main()
