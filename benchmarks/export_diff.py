"""Compare the exports two checkouts of clinreason write from the same database: every file of every case
byte for byte; where a Parquet or Arrow file differs in bytes, its table is compared too (equal tables are
reported as such, not as a failure of the content). Used to show that a change to the export leaves its
outputs as they were.

    python benchmarks/export_diff.py --ref /work/main/src --new src --db PATH [--project NAME]
                                     [--cases jsonl,parquet,hf | all] [--work DIR] [--keep-ref]

Each export runs in a fresh process with PYTHONPATH set to the checkout's src folder. With --keep-ref the
reference outputs stay in WORK/ref-* and are reused on the next run (the reference code is often the slow
one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

LICENSES = {"medqa": "MIT", "cmexam": "research use only"}
#: name -> keyword arguments of ExportOptions
CASES: dict[str, dict] = {
    "jsonl": {"fmt": "jsonl"},
    "parquet": {"fmt": "parquet"},
    "hf": {"fmt": "hf"},
    "sft": {"fmt": "sft"},
    "dpo": {"fmt": "dpo"},
    "prm": {"fmt": "prm"},
    "argilla": {"fmt": "argilla"},
    "labelstudio": {"fmt": "labelstudio"},
    "jsonl-history": {"fmt": "jsonl", "with_history": True},
    "parquet-history": {"fmt": "parquet", "with_history": True},
    "jsonl-splits": {"fmt": "jsonl", "splits": [0.8, 0.1, 0.1]},
    "parquet-splits": {"fmt": "parquet", "splits": [0.5, 0.5]},
    "hf-splits": {"fmt": "hf", "splits": [0.8, 0.1, 0.1]},
    "jsonl-minscore": {"fmt": "jsonl", "min_score": 3.5},
    "jsonl-minscore-splits": {"fmt": "jsonl", "min_score": 3.0, "splits": [0.7, 0.3]},
    "jsonl-adjudication": {"fmt": "jsonl", "consensus": "adjudication"},
    "jsonl-source": {"fmt": "jsonl", "source": "medqa"},
    "jsonl-chunk7": {"fmt": "jsonl", "with_history": True, "chunk_size": 7},
}

CHILD = """
import json, sys
from pathlib import Path
from clinreason.store import db
from clinreason.stages.export import ExportOptions, run_export
path, project, out, kw, licenses = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
if kw.get("splits"):
    kw["splits"] = tuple(kw["splits"])
s = run_export(db.make_engine(path), project=project, out=Path(out), opts=ExportOptions(**kw), licenses=licenses)
d = s.to_dict(); d.pop("seconds")
print(json.dumps(d, sort_keys=True))
"""


def export(src: Path, db: str, project: str, out: Path, kw: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", CHILD, db, project, str(out), json.dumps(kw), json.dumps(LICENSES)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        return "ERROR " + proc.stderr.strip().splitlines()[-1]
    return proc.stdout.strip().splitlines()[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables_equal(a: Path, b: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if a.suffix == ".parquet":
        return pq.read_table(a).equals(pq.read_table(b), check_metadata=True)
    with pa.memory_map(str(a)) as fa, pa.memory_map(str(b)) as fb:
        return pa.ipc.open_stream(fa).read_all().equals(pa.ipc.open_stream(fb).read_all(), check_metadata=True)


def compare(ref: Path, new: Path) -> list[str]:
    problems = []
    ref_files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    new_files = sorted(p.relative_to(new) for p in new.rglob("*") if p.is_file())
    if ref_files != new_files:
        problems.append(f"files differ: {sorted(set(ref_files) ^ set(new_files))}")
    for rel in ref_files:
        if rel not in new_files or digest(ref / rel) == digest(new / rel):
            continue
        if rel.suffix in (".parquet", ".arrow") and tables_equal(ref / rel, new / rel):
            problems.append(f"{rel}: bytes differ, tables equal")
        else:
            problems.append(f"{rel}: DIFFERENT")
    return problems


def make_mixed(path: Path, n_items: int) -> None:
    """bench_export's synthetic database, then roughened with sqlite3 (immutability triggers dropped on this
    scratch copy): step marks out of order with notes and corrections, odd scores (float, bool, missing,
    text), comments, edited texts, nested parameters, several sources per item, missing licences and
    subjects, contexts, numeric option labels, items not accepted, a reviewer without an account."""
    import random
    import sqlite3

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_export import build_database

    build_database(path, n_items, seed=7)
    con = sqlite3.connect(path)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    rng = random.Random(5)
    reviews = con.execute("SELECT id, rationale_id, scores FROM reviews ORDER BY id").fetchall()
    for rid, rat, scores in reviews:
        roll = rng.random()
        marks = None
        if roll < 0.4:
            n = rng.randint(1, 3)
            marks = [{"step": s, "verdict": rng.choice(["ok", "error"]), "category": "factual",
                      "severity": rng.choice(["minor", "major", "critical"]), "note": "n\u00e9 \"q\"\n\u75c5",
                      "correction": rng.choice([None, "", "fixed 步骤"])} for s in rng.sample(range(1, 4), n)]
        elif roll < 0.5:
            marks = []
        sc = json.loads(scores)
        if rng.random() < 0.05:
            sc["correctness"] = rng.choice([3.0, True, "4", None, 7])
        if rng.random() < 0.03:
            sc.pop("reasoning", None)
        if rng.random() < 0.02:
            sc["extra"] = 2
        comments = {"general": "ok 好", "correctness": ""} if rng.random() < 0.2 else {}
        edited = "edited text\n第二行" if rng.random() < 0.05 else None
        seconds = None if rng.random() < 0.05 else round(rng.uniform(1, 900), 1)
        sep = (", ", ": ") if rng.random() < 0.5 else (",", ":")
        con.execute("UPDATE reviews SET steps=?, scores=?, comments=?, edited_text=?, seconds_spent=? WHERE id=?",
                    (None if marks is None else json.dumps(marks, separators=sep), json.dumps(sc, separators=sep),
                     json.dumps(comments, ensure_ascii=rng.random() < 0.5), edited, seconds, rid))
    for (rat,) in con.execute("SELECT id FROM rationales ORDER BY id").fetchall():
        roll = rng.random()
        if roll < 0.1:
            con.execute("UPDATE rationales SET params=?, seed=? WHERE id=?",
                        (json.dumps({"top_p": 0.9, "temperature": 0.7, "extra": {"b": 1, "a": [1, "é"]}}), 42, rat))
        elif roll < 0.15:
            con.execute("UPDATE rationales SET steps='[]', text='only text, no steps\n' WHERE id=?", (rat,))
        elif roll < 0.2:
            con.execute("UPDATE rationales SET author='model:x', model=NULL, prompt_hash=NULL WHERE id=?", (rat,))
    items = [r[0] for r in con.execute("SELECT id FROM items ORDER BY id").fetchall()]
    for iid in items:
        roll = rng.random()
        if roll < 0.1:
            con.execute("INSERT INTO item_sources (item_id, source, subject, file, record, license, imported_at) "
                        "VALUES (?, 'extra', 'subj', 'x.jsonl', ?, NULL, '2025-03-01 08:00:00.000000')", (iid, iid))
        elif roll < 0.15:
            con.execute("UPDATE item_sources SET license=NULL, subject='s' WHERE item_id=?", (iid,))
        elif roll < 0.2:
            con.execute("UPDATE items SET context='ctx\tline', answer_text='free', specialty=NULL, "
                        "language='zh-CN', options='[[1,\"one\"],[2,\"two\"]]', answer_labels='[1]' WHERE id=?",
                        (iid,))
        elif roll < 0.25:
            con.execute("UPDATE items SET state='in_review' WHERE id=?", (iid,))
        elif roll < 0.28:
            con.execute("UPDATE decisions SET kind='excluded', rationale_id=NULL WHERE item_id=?", (iid,))
            con.execute("UPDATE items SET state='excluded' WHERE id=?", (iid,))
        elif roll < 0.3:
            con.execute("DELETE FROM item_sources WHERE item_id=?", (iid,))
    con.execute("UPDATE reviews SET reviewer_id=99 WHERE id IN (SELECT id FROM reviews WHERE id LIKE '%r0' ORDER BY id LIMIT 5)")
    con.commit()
    con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="src folder of the reference checkout")
    parser.add_argument("--new", required=True, help="src folder of the checkout under test")
    parser.add_argument("--db", required=True)
    parser.add_argument("--project", default="default")
    parser.add_argument("--cases", default="jsonl,parquet,hf")
    parser.add_argument("--work", default="/tmp/export-diff")
    parser.add_argument("--keep-ref", action="store_true")
    parser.add_argument("--make-mixed", type=int, default=0, metavar="N",
                        help="first write a roughened synthetic database of N items to --db")
    args = parser.parse_args()
    if args.make_mixed:
        Path(args.db).unlink(missing_ok=True)
        make_mixed(Path(args.db), args.make_mixed)
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(f"{Path(args.db).resolve()}\x00{args.project}".encode()).hexdigest()[:8]
    failed = 0
    for name in names:
        ref_out, new_out = work / f"ref-{tag}-{name}", work / f"new-{tag}-{name}"
        ref_summary_file = work / f"ref-{tag}-{name}.summary"
        reuse = args.keep_ref and ref_summary_file.exists() and (
            ref_out.exists() or ref_summary_file.read_text().startswith("ERROR"))
        if not reuse:
            shutil.rmtree(ref_out, ignore_errors=True)
            ref_summary_file.write_text(export(Path(args.ref).resolve(), args.db, args.project, ref_out, CASES[name]))
        shutil.rmtree(new_out, ignore_errors=True)
        new_summary = export(Path(args.new).resolve(), args.db, args.project, new_out, CASES[name])
        ref_summary = ref_summary_file.read_text()
        problems = [] if ref_summary == new_summary else [f"summary: {ref_summary} != {new_summary}"]
        if ref_out.exists() or new_out.exists():
            problems += compare(ref_out, new_out)
        hard = [p for p in problems if not p.endswith("tables equal")]
        failed += bool(hard)
        print(f"{name:<24} {'OK' if not problems else 'OK (' + '; '.join(problems) + ')' if not hard else 'FAIL'}"
              + ("" if not hard else "\n    " + "\n    ".join(problems)), flush=True)
        if not args.keep_ref:
            shutil.rmtree(ref_out, ignore_errors=True)
        shutil.rmtree(new_out, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
