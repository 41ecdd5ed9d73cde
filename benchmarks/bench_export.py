"""Export at scale: seconds and peak memory of `clinreason export` for 31,247 items (the size of the
paper's dataset) to jsonl, parquet and hf, and for 1,000,000 items to jsonl and parquet.

    python benchmarks/bench_export.py [--sizes 31247[,1000000]] [--formats31k jsonl,parquet,hf]
                                      [--formats1m jsonl,parquet] [--workdir DIR] [--seeded DIR] [--json]

Each database is a temporary SQLite file filled with synthetic review data by executemany (items with a
source and licence, 1–3 rationale versions, two or three reviews per version, a decision). Each export
runs in a fresh Python process, which reports its own seconds and peak RSS (ru_maxrss), dataset card
included, and the CPU and peak RSS of the child process it starts where the card needs a full scan of many
reviews (analytics/kept_child: that scan runs on the other core, beside the row pass). Beside it, measured in the same run, the anchor: another fresh process reads the same rows into
Python lists first (untimed, a chunk of 31,247 rows at a time, so memory stays bounded at 1M) and times
only writing them with the same writers and libraries (json, pyarrow, datasets) — what an export would
cost if reading the database were free. Figures: the three 31k exports together (limit 3.5 s) and against
1.5x their anchors, run as three commands and as one (`--format jsonl,parquet,hf`: one read of the database); at every larger size, each format against 1.5x its anchor and its peak RSS (limit
500 MB). The default is --sizes 31247; seeding the 1M database takes minutes, so it is an option. Each line
also prints the CPU seconds of the export, its anchor and the card (wall time is noisy on a shared machine).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report  # noqa: E402

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


def without_kept_scan(path: Path) -> None:
    """A reused database brought to the current schema, with no kept review scan: each run starts as a freshly
    seeded one does (the first export builds and stores the scan; the next formats' cards read it)."""
    import sqlite3

    from clinreason.store import db

    db.upgrade(db.make_engine(str(path)))
    con = sqlite3.connect(path)
    con.execute("DELETE FROM scan_states")
    con.commit()
    con.close()


CHILD = """
import json, resource, sys, time
from pathlib import Path
from clinreason.store import db
from clinreason.stages.export import ExportOptions, run_export, run_exports
import clinreason.stages.export.card, clinreason.stages.export.formats
fmt, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
if "parquet" in fmt or "hf" in fmt:
    import pyarrow.parquet  # noqa
if "hf" in fmt:
    import datasets  # noqa
if out == "-":
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(0)
engine = db.make_engine(path)
t0, c0 = time.perf_counter(), time.process_time()
licenses = {"medqa": "MIT", "cmexam": "research use only"}
if "," in fmt:  # several formats in one command: one read of the database
    s = run_exports(engine, project="default", out=Path(out), formats=tuple(fmt.split(",")), opts=ExportOptions(),
                    licenses=licenses)[0]
else:
    s = run_export(engine, project="default", out=Path(out), opts=ExportOptions(fmt=fmt), licenses=licenses)
seconds, peak = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cpu = time.process_time() - c0
# a child process the export started (analytics/kept_child: the card's scan, beside the row pass)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
child_cpu, child_peak = kids.ru_utime + kids.ru_stime, kids.ru_maxrss / 1024
# the card's share: its numbers computed once more, alone (the same queries and analytics write_card runs)
from clinreason.stages.export.card import card_numbers
from clinreason.store.db import read_snapshot
from clinreason.store import projects
with read_snapshot(engine) as conn:
    proj = projects.require_project(conn, name="default")
    t0, c0 = time.perf_counter(), time.process_time()
    card_numbers(conn, project=proj, rubric_body=projects.latest_rubric(conn, project_id=proj["id"]))
    card, card_cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": s.total, "peak_mb": peak, "card_seconds": card,
                  "card_cpu": card_cpu, "child_cpu": child_cpu, "child_peak_mb": child_peak}))
"""

#: the anchor: the export's rows already in lists (read untimed, CHUNK at a time), written by the same sink
ANCHOR = """
import json, sys, tempfile, time
from collections import Counter
from pathlib import Path
from clinreason.analytics.scan import rubric_dimensions
from clinreason.store import db
from clinreason.store import projects as store_projects
from clinreason.stages.export import ExportOptions
from clinreason.store.db import read_snapshot
from clinreason.stages.export.formats import open_sink
from clinreason.stages.export.rows import Reader
fmt, path, out, chunk = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
out.mkdir()
opts = ExportOptions(fmt=fmt)
engine = db.make_engine(path)
timed, cpu, rows = 0.0, 0.0, 0
with read_snapshot(engine) as conn, tempfile.TemporaryDirectory() as tmp:
    proj = store_projects.require_project(conn, name="default")
    rubric = store_projects.latest_rubric(conn, project_id=proj["id"])
    dims, _ = rubric_dimensions(rubric)
    reader = Reader(conn, proj, dims, opts, {"medqa": "MIT", "cmexam": "research use only"})
    sink = open_sink(fmt, out, Path(tmp), ("data",), dims, opts, step_labels=Counter(), rubric_body=rubric,
                     project="default")
    stream, buf = reader.rows(), []
    while True:
        buf.clear()
        for row in stream:
            buf.append(row)
            if len(buf) >= chunk:
                break
        if not buf:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        for row in buf:
            sink.write("data", row)
        timed += time.perf_counter() - t0
        cpu += time.process_time() - c0
        rows += len(buf)
    t0, c0 = time.perf_counter(), time.process_time()
    sink.close()
    timed += time.perf_counter() - t0
    cpu += time.process_time() - c0
print(json.dumps({"seconds": timed, "cpu": cpu, "rows": rows}))
"""
ANCHOR_CHUNK = 31_247
PAPER_SIZE = 31_247


def _child(r: dict) -> str:
    """The child process an export may start for the card's scan (analytics/kept_child), on the other core."""
    if not r.get("child_cpu"):
        return ""
    return f"; its child process (the card's scan): cpu {r['child_cpu']:.2f} s, peak {r['child_peak_mb']:.0f} MB"


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(fmt: str, db_path: Path, out: Path | str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, fmt, str(db_path), str(out)], capture_output=True,
                          text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_anchor(fmt: str, db_path: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", ANCHOR, fmt, str(db_path), str(out), str(ANCHOR_CHUNK)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    report = Report.from_argv()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="31247", help="item counts, comma-separated (e.g. 31247,1000000)")
    parser.add_argument("--formats31k", default="jsonl,parquet,hf")
    parser.add_argument("--formats1m", default="jsonl,parquet")
    parser.add_argument("--workdir", default=None, help="where the databases and exports go (default: a temp dir)")
    parser.add_argument("--seeded", default=None,
                        help="keep the seeded databases in this folder and reuse them on the next run (seeding 1M "
                             "items takes minutes)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=args.workdir) as tmp:
        work = Path(tmp)
        baselines = {fmt: run_child(fmt, work / "none.db", "-")["peak_mb"] for fmt in ("jsonl", "parquet", "hf")}
        report.note("baseline peak RSS (imports only): " + ", ".join(f"{k} {v:.0f} MB" for k, v in baselines.items()))
        for size in sizes:
            db_path, t0 = work / f"items{size}.db", time.perf_counter()
            kept = Path(args.seeded) / f"items{size}.db" if args.seeded else None
            if kept is not None and kept.with_suffix(".json").exists():
                db_path, counts = kept, json.loads(kept.with_suffix(".json").read_text())
                without_kept_scan(db_path)
                report.note(f"\n{size:,} items: reusing {kept} ({counts['rationales']:,} versions, "
                            f"{counts['reviews']:,} reviews)")
            else:
                if kept is not None:
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.unlink(missing_ok=True)
                    db_path = kept
                counts = build_database(db_path, size)
                if kept is not None:
                    kept.with_suffix(".json").write_text(json.dumps(counts))
                report.note(f"\n{size:,} items: generated {counts['rationales']:,} versions, {counts['reviews']:,} "
                            f"reviews in {time.perf_counter() - t0:.1f} s ({db_path.stat().st_size / 2**20:.0f} MB "
                            f"SQLite file); this process's peak RSS so far {_peak_mb():.0f} MB")
            first = size == PAPER_SIZE  # the three formats together; any other size: each format alone
            formats = (args.formats31k if first else args.formats1m).split(",")
            report.note(f"{'format':<8} {'seconds':>8} {'anchor s':>9} {'items/s':>9} {'peak RSS':>10} "
                        f"{'over baseline':>14}   CPU seconds (export / anchor / card), for a loaded machine")
            total = anchor_total = card_total = 0.0
            for fmt in formats:
                r = run_child(fmt, db_path, work / f"out-{size}-{fmt}")
                a = run_anchor(fmt, db_path, work / f"anchor-{size}-{fmt}")
                assert r["rows"] == size == a["rows"], (r, a)
                total += r["seconds"]
                anchor_total += a["seconds"]
                card_total += r["card_seconds"]
                report.note(f"{fmt:<8} {r['seconds']:>8.2f} {a['seconds']:>9.2f} {r['rows'] / r['seconds']:>9.0f} "
                            f"{r['peak_mb']:>7.0f} MB {r['peak_mb'] - baselines[fmt]:>+11.0f} MB   (of which the "
                            f"dataset card's numbers ~{r['card_seconds']:.2f} s)   cpu {r['cpu']:.2f} / "
                            f"{a['cpu']:.2f} / {r['card_cpu']:.2f}{_child(r)}")
                if not first:
                    report.figure(f"export_{size}_{fmt}_seconds_vs_1.5x_anchor", value=r["seconds"],
                                  limit=1.5 * a["seconds"], higher_is_better=False, unit="s")
                    report.figure(f"export_{size}_{fmt}_peak_rss_mb", value=r["peak_mb"], limit=500,
                                  higher_is_better=False, unit="MB")
                for p in work.glob(f"*-{size}-{fmt}"):
                    subprocess.run(["rm", "-rf", str(p)], check=True)
            if first:
                label = "_".join(formats)
                report.figure(f"export_{size}_{label}_seconds", value=total, limit=3.5, higher_is_better=False,
                              unit="s")
                report.figure(f"export_{size}_{label}_seconds_vs_1.5x_anchor", value=total,
                              limit=1.5 * anchor_total, higher_is_better=False, unit="s")
                report.figure(f"export_{size}_{label}_seconds_without_card_vs_1.5x_anchor",
                              value=total - card_total, limit=1.5 * anchor_total, higher_is_better=False, unit="s")
                # the same three in one command (`export OUT --format jsonl,parquet,hf`): one read, one card's
                # numbers; started as the first export above was, without a kept review scan
                without_kept_scan(db_path)
                t0 = time.perf_counter()
                r = run_child(",".join(formats), db_path, work / f"out-{size}-together")
                wall = time.perf_counter() - t0
                assert r["rows"] == size, r
                report.note(f"one command, --format {','.join(formats)}: {r['seconds']:.2f} s in the process "
                            f"({wall:.2f} s with the interpreter's start and imports), peak {r['peak_mb']:.0f} MB, "
                            f"cpu {r['cpu']:.2f} s (of which the card's numbers ~{r['card_seconds']:.2f} s)"
                            f"{_child(r)}")
                report.figure(f"export_{size}_{label}_one_command_seconds", value=r["seconds"], limit=3.5,
                              higher_is_better=False, unit="s")
                report.figure(f"export_{size}_{label}_one_command_seconds_vs_1.5x_anchor", value=r["seconds"],
                              limit=1.5 * anchor_total, higher_is_better=False, unit="s")
                subprocess.run(["rm", "-rf", str(work / f"out-{size}-together")], check=True)
                # once more, now that the kept review scan is stored (as it is after `agreement`, `stats` or
                # the dashboard): what the card costs when the scan only has to be brought up to date
                again = run_child(",".join(formats), db_path, work / f"out-{size}-together")
                report.note(f"the same command again, the kept review scan stored: {again['seconds']:.2f} s "
                            f"(cpu {again['cpu']:.2f} s; not a figure: the one above starts without the scan)")
                subprocess.run(["rm", "-rf", str(work / f"out-{size}-together")], check=True)
            if kept is None:  # a kept database stays for the next run
                db_path.unlink()


if __name__ == "__main__":
    main()
