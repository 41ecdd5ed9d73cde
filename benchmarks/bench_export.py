"""Export at scale: seconds and peak memory of `clinreason export` for 31,247 items (the size of the
paper's dataset) to jsonl, parquet and hf, and for 1,000,000 items to jsonl and parquet.

    python benchmarks/bench_export.py [--sizes 31247,1000000] [--formats31k jsonl,parquet,hf]
                                      [--formats1m jsonl,parquet] [--workdir DIR]

Each database is a temporary SQLite file filled with synthetic review data by executemany (items with a
source and licence, 1–3 rationale versions, two or three reviews per version, a decision). Each export
runs in a fresh Python process, which reports its own peak RSS (ru_maxrss); beside every figure the
benchmark prints its baseline: the peak RSS of a process that only imports what the export imports, and
for the large run the ratio of peak memory at 1M items to that at 31k items (flat memory: close to 1).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIMS = ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value"]
SPECIALTIES = ["cardiology", "neurology", "pediatrics", "surgery", "obstetrics", "infectious disease"]
STAMP = "2025-03-01 08:00:00.000000"


def build_database(path: Path, n_items: int, seed: int = 1) -> dict[str, int]:
    """Schema and project through clinreason; rows through sqlite3.executemany (fast, streaming)."""
    from clinreason.config import ProjectConfig
    from clinreason.store import db
    from clinreason.store import projects as store_projects

    engine = db.make_engine(str(path))
    db.upgrade(engine)
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                         rubric=pc.rubric)
    engine.dispose()
    pid = project["id"]
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    reviewers = list(range(1, 41))
    con.executemany("INSERT INTO users (id, username, role, specialties, password_hash, active, created_at) "
                    "VALUES (?, ?, ?, ?, 'x', 1, ?)",
                    [(r, f"expert{r:02d}", "adjudicator" if r > 36 else "reviewer",
                      json.dumps([SPECIALTIES[r % len(SPECIALTIES)]]), STAMP) for r in reviewers])
    counts = {"items": 0, "rationales": 0, "reviews": 0}
    rng = random.Random(seed)
    batch = 20_000
    for start in range(0, n_items, batch):
        items, sources, rats, revs, decs = [], [], [], [], []
        for n in range(start, min(start + batch, n_items)):
            iid = f"q{n:07d}"
            zh = n % 4 == 0
            versions = rng.choices([1, 2, 3], [70, 25, 5])[0]
            items.append((iid, pid, f"{n:064d}", ("患者，男，58岁，胸痛2小时，首选药物？" if zh else
                                                  f"Question {n}: a 58-year-old with crushing chest pain. First drug?"),
                          '[["A","Aspirin"],["B","Morphine"],["C","Nitrates"],["D","Oxygen"]]', '["A"]',
                          "zh" if zh else "en", SPECIALTIES[n % len(SPECIALTIES)], "{}", "accepted", versions - 1,
                          STAMP, STAMP))
            src = ("cmexam", "research use only") if zh else ("medqa", "MIT")
            sources.append((iid, src[0], f"{src[0]}.jsonl", str(n), src[1], STAMP))
            for v in range(1, versions + 1):
                rid = f"{iid}v{v}"
                origin = "generated" if v == 1 else rng.choice(["regenerated", "edited"])
                steps = [f"The presentation suggests acute coronary syndrome (v{v}).",
                         "Aspirin reduces mortality and is given first.", "The other options treat symptoms only."]
                rats.append((rid, iid, v, v - 1 if v > 1 else None, origin,
                             "user:expert01" if origin == "edited" else "model:deepseek-r1", json.dumps(steps),
                             '["A"]', "\n".join(steps) + "\nFinal answer: A",
                             None if origin == "edited" else "deepseek-r1", '{"temperature":0.2}',
                             None if origin == "edited" else "a" * 64, 0, "ok", 420, 380, 0.0012, STAMP))
                for j, who in enumerate(rng.sample(reviewers[:36], 3 if rng.random() < 0.1 else 2)):
                    q = 3 + v * 0.5
                    scores = {d: max(1, min(5, round(q + rng.gauss(0, 0.8)))) for d in DIMS}
                    verdict = "accept" if v == versions else rng.choice(["edit", "regenerate"])
                    revs.append((f"{rid}r{j}", rid, iid, who, verdict, json.dumps(scores), "{}",
                                 round(rng.uniform(40, 400), 1), 1, STAMP))
            decs.append((iid, "consensus" if rng.random() < 0.93 else "adjudication", f"{iid}v{versions}",
                         "consensus", "", STAMP))
        con.executemany("INSERT INTO items (id, project_id, content_hash, question, options, answer_labels, language, "
                        "specialty, meta, state, strikes, auto_retries, created_at, updated_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)", items)
        con.executemany("INSERT INTO item_sources (item_id, source, file, record, license, imported_at) "
                        "VALUES (?,?,?,?,?,?)", sources)
        con.executemany("INSERT INTO rationales (id, item_id, version, parent_version, origin, author, steps, "
                        "final_answer, text, model, params, prompt_hash, seed, parse_status, prompt_tokens, "
                        "completion_tokens, cost, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rats)
        con.executemany("INSERT INTO reviews (id, rationale_id, item_id, reviewer_id, verdict, scores, comments, "
                        "seconds_spent, rubric_version, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)", revs)
        con.executemany("INSERT INTO decisions (item_id, kind, rationale_id, decided_by, reason, created_at) "
                        "VALUES (?,?,?,?,?,?)", decs)
        con.commit()
        counts["items"] += len(items)
        counts["rationales"] += len(rats)
        counts["reviews"] += len(revs)
    con.close()
    return counts


CHILD = """
import json, resource, sys, time
from pathlib import Path
from clinreason.store import db
from clinreason.stages.export import ExportOptions, run_export
import clinreason.stages.export.card, clinreason.stages.export.formats
fmt, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
if fmt in ("parquet", "hf"):
    import pyarrow.parquet  # noqa
if fmt == "hf":
    import datasets  # noqa
if out == "-":
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(0)
engine = db.make_engine(path)
t0 = time.perf_counter()
s = run_export(engine, project="default", out=Path(out), opts=ExportOptions(fmt=fmt),
               licenses={"medqa": "MIT", "cmexam": "research use only"})
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": s.total,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(fmt: str, db_path: Path, out: Path | str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, fmt, str(db_path), str(out)], capture_output=True,
                          text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="31247,1000000")
    parser.add_argument("--formats31k", default="jsonl,parquet,hf")
    parser.add_argument("--formats1m", default="jsonl,parquet")
    parser.add_argument("--workdir", default=None, help="where the databases and exports go (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=args.workdir) as tmp:
        work = Path(tmp)
        baselines = {fmt: run_child(fmt, work / "none.db", "-")["peak_mb"] for fmt in ("jsonl", "parquet", "hf")}
        print("baseline peak RSS (imports only): " + ", ".join(f"{k} {v:.0f} MB" for k, v in baselines.items()))
        first_peak: dict[str, float] = {}
        for size in sizes:
            db_path = work / f"items{size}.db"
            t0 = time.perf_counter()
            counts = build_database(db_path, size)
            print(f"\n{size:,} items: generated {counts['rationales']:,} versions, {counts['reviews']:,} reviews in "
                  f"{time.perf_counter() - t0:.1f} s ({db_path.stat().st_size / 2**20:.0f} MB SQLite file)")
            formats = (args.formats31k if size == sizes[0] else args.formats1m).split(",")
            print(f"{'format':<8} {'seconds':>8} {'items/s':>9} {'peak RSS':>10} {'over baseline':>14} {'vs first size':>14}")
            for fmt in formats:
                r = run_child(fmt, db_path, work / f"out-{size}-{fmt}")
                first_peak.setdefault(fmt, r["peak_mb"])
                ratio = r["peak_mb"] / first_peak[fmt]
                print(f"{fmt:<8} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9.0f} {r['peak_mb']:>7.0f} MB "
                      f"{r['peak_mb'] - baselines[fmt]:>+11.0f} MB {ratio:>13.2f}x")
                assert r["rows"] == size, r
            db_path.unlink()
            for p in work.glob(f"out-{size}-*"):
                subprocess.run(["rm", "-rf", str(p)], check=True)


if __name__ == "__main__":
    main()
