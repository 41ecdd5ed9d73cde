"""The read models at scale (issue 16, item 4): `agreement --json`, `stats --json`, the dashboard's numbers and the
dataset card, each from the kept review scan (analytics/kept.py) after 1,000 new reviews, against a limit of
1 s each; beside them, measured in the same run, the same four from a full scan (no kept state: what every
call cost before).

    python benchmarks/bench_readmodels.py [--items 200000] [--seeded DB] [--keep DB] [--no-before] [--profile]
                                          [--profile-sort tottime] [--read-through] [--json]

The database is a temporary SQLite file seeded by bench_export's executemany seeder (N items, 1–3 versions
each, two or three reviews per version: about 2.8 N reviews), its reviews and decisions then spread over a
year (`spread_stamps`). Then: the four reads from a full scan
("before"); building the kept state once (reported: the first `agreement --json`, which stores the counts
and the pairwise κ intervals); and for each read, 1,000 new reviews (on random
existing versions, by reviewers who had not reviewed them, stamped now) followed by the read ("after"), so
each read brings the stored state up to date over at least those 1,000. `agreement` and `stats` run through
the CLI in-process (they also store the updated state), the dashboard as GET /dashboard makes it (the kept
state refreshed and stored, `charts.dashboard_context`, the reliability fit kept), the card as an export makes
it (the state brought up to date in the read snapshot, `card.card_numbers`, the state stored after). CPU seconds are printed beside wall seconds (the machine is shared).
With --profile, cProfile's top functions of each "after" read go to stderr (--profile-sort tottime: by own time).
With --read-through, the database file is read through (untimed) before each "after" read, so that its pages are
in the OS page cache as on a server whose database is in use (figures `readmodels_<read>_cached_file_s`): this
machine's memory reclaim evicts a file's pages minutes after their last use, and at 1M the reads then wait on the
disk for about half their time.

Between the kept state and the "after" reads, one `stats --json` fits the reviewer-reliability model on every vote
and stores it (`evidence_fits`: "first fit"); each "after" read starts with no fit in memory, as a new process
or another web worker would, and takes the stored one (it stands until the reviews grow by a tenth).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report  # noqa: E402
from bench_export import DIMS, build_database  # noqa: E402

LIMIT_S = 1.0


def spread_stamps(path: Path, days: int = 365) -> None:
    """bench_export's seeder stamps every row with one instant; a real project's reviews and decisions
    arrive over months. Spread them evenly (by rowid) over `days` days ending a day ago — done with the
    immutability triggers lifted for the moment (a benchmark's seeding only) and put back as they were, and the
    per-day tallies counted again."""
    con = sqlite3.connect(path)
    triggers = con.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger' "
                           "AND tbl_name IN ('reviews', 'decisions')").fetchall()
    for name, _ in triggers:
        con.execute(f'DROP TRIGGER "{name}"')
    end = datetime.now(UTC).timestamp() - 86_400
    for table in ("reviews", "decisions"):
        n = con.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 1
        step = days * 86_400 / n
        con.execute(f"UPDATE {table} SET created_at = strftime('%Y-%m-%d %H:%M:%f', ? + rowid * ?, 'unixepoch') "
                    "|| '000'", (end - days * 86_400, step))
    for _, sql in triggers:
        con.execute(sql)
    if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'day_tallies'").fetchone():
        # the per-day tallies (migration 0015) counted the stamps as seeded: count them again as spread
        import importlib

        tallies = importlib.import_module("clinreason.store.migrations.versions.0015_item_tallies")
        con.execute("DELETE FROM day_tallies")
        for fill in tallies.FILL_DAYS:
            con.execute(fill)
    con.commit()
    con.close()


def add_reviews(path: Path, n: int, rng: random.Random, tag: str) -> None:
    """n reviews on random existing versions, each by a reviewer who had not reviewed it, created now."""
    con = sqlite3.connect(path)
    rows = con.execute("SELECT id, item_id FROM rationales ORDER BY id").fetchall()
    taken = set(con.execute("SELECT rationale_id, reviewer_id FROM reviews WHERE reviewer_id > 36"))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    out = []
    while len(out) < n:
        rid, iid = rng.choice(rows)
        who = rng.randint(37, 40)
        if (rid, who) in taken:
            continue
        taken.add((rid, who))
        scores = "{" + ",".join(f'"{d}":{rng.randint(1, 5)}' for d in DIMS) + "}"
        out.append((f"{rid}x{tag}{who}", rid, iid, who, rng.choice(["accept", "edit"]), scores, "{}",
                    round(rng.uniform(40, 400), 1), 1, stamp))
    con.executemany("INSERT INTO reviews (id, rationale_id, item_id, reviewer_id, verdict, scores, comments, "
                    "seconds_spent, rubric_version, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)", out)
    con.commit()
    con.close()


def read_through(path: Path) -> float:
    """Read the database file (and its WAL) once, untimed, so that its pages are in the OS page cache, as on
    a server whose database is in use; seconds it took. (This machine's memory reclaim evicts pages a few
    minutes after their last use, so a read right after a long seeding mostly waits on the disk.)"""
    t = time.perf_counter()
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            with open(name, "rb") as f:
                while f.read(1 << 24):
                    pass
    return time.perf_counter() - t


SORT = "cumulative"


def timed(fn, profile: bool, label: str, report: Report) -> tuple[float, float]:
    prof = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    fn()
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if prof:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats(SORT).print_stats(18 if SORT == "cumulative" else 30)
        print(f"--- cProfile: {label}\n{text.getvalue()}", file=sys.stderr)
    report.note(f"  {label:<34} wall {wall:7.3f} s   cpu {cpu:7.3f} s")
    return wall, cpu


def main() -> None:
    report = Report.from_argv()
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--seeded", type=Path, help="an already seeded database (copied first: it is changed)")
    parser.add_argument("--keep", type=Path, help="keep the seeded database at this path (before any change)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--read-through", action="store_true",
                        help="read the database file through (untimed) before each read: its pages in the OS cache")
    parser.add_argument("--profile-sort", default="cumulative", help="cProfile's order: cumulative or tottime")
    parser.add_argument("--no-before", action="store_true", help="skip the full-scan reads (minutes at 1M)")
    args = parser.parse_args()
    global SORT
    SORT = args.profile_sort

    from typer.testing import CliRunner

    from clinreason.analytics.charts import dashboard_context
    from clinreason.analytics.kept import refresh
    from clinreason.analytics.reliability import keep_fit
    from clinreason.cli import app
    from clinreason.stages.export.card import card_numbers
    from clinreason.stages.export.stage import review_scan, store_review_scan
    from clinreason.store import db as dbm
    from clinreason.store import projects as store_projects
    from clinreason.store import scanstate

    work = Path(tempfile.mkdtemp(prefix="bench_readmodels_"))
    path = work / "db.sqlite"
    if args.seeded:
        import shutil

        shutil.copyfile(args.seeded, path)
        report.note(f"seeded database: {args.seeded}")
    else:
        t = time.perf_counter()
        counts = build_database(path, args.items)
        spread_stamps(path)
        report.note(f"seeded {counts} in {time.perf_counter() - t:.1f} s")
        if args.keep:
            import shutil

            shutil.copyfile(path, args.keep)
    engine = dbm.make_engine(f"sqlite:///{path}")
    dbm.upgrade(engine)
    with engine.connect() as conn:
        project = store_projects.require_project(conn, name="default")
        rubric = store_projects.latest_rubric(conn, project_id=project["id"])
        n_reviews = conn.exec_driver_sql("SELECT count(*) FROM reviews").scalar_one()
    pid = project["id"]
    report.note(f"{n_reviews} reviews")
    runner = CliRunner()
    url = f"sqlite:///{path}"

    def agreement() -> None:
        out = runner.invoke(app, ["agreement", "--json", "--db", url])
        assert out.exit_code == 0, out.output

    def stats() -> None:
        out = runner.invoke(app, ["stats", "--json", "--db", url])
        assert out.exit_code == 0, out.output

    def dashboard() -> None:  # as GET /dashboard serves it: the kept scan refreshed and stored, then the numbers
        scan = refresh(engine, project_id=pid)
        with dbm.reading(engine) as conn:
            dashboard_context(conn, pid, scan=scan)
        keep_fit(engine, pid)

    def card() -> None:  # as an export makes it: the kept scan brought up to date in the snapshot, stored after
        with dbm.read_snapshot(engine) as conn:
            update = review_scan(conn, project_id=pid, rubric_body=rubric)
            card_numbers(conn, project=project, rubric_body=rubric, scan=update.scan)
        store_review_scan(engine, project_id=pid, update=update)

    def no_state() -> None:
        with engine.begin() as conn:
            scanstate.discard(conn, project_id=pid)

    reads = [("agreement_json", agreement), ("stats_json", stats), ("dashboard", dashboard), ("card", card)]
    report.note("before (a full scan on every call: no kept state)")
    before = {}
    for name, fn in reads if not args.no_before else []:
        no_state()
        before[name] = timed(fn, False, name + " (full scan)", report)
        no_state()
    report.note("building the kept state once (the first `agreement --json`: the counts and the pairs' intervals)")
    wall, _ = timed(agreement, args.profile, "build state", report)
    report.figure("readmodels_build_state_s", value=wall, limit=max(60.0, n_reviews / 20_000), higher_is_better=False,
                  unit="s")
    from clinreason.analytics import reliability

    reliability._EVIDENCE_CACHE.clear()
    report.note("a first `stats --json` in a new process: it fits the reliability model on every vote and stores it")
    wall, _ = timed(stats, args.profile, "first fit", report)
    report.figure("readmodels_first_fit_s", value=wall, limit=max(60.0, n_reviews / 20_000), higher_is_better=False,
                  unit="s")
    rng = random.Random(16)
    report.note("after (the kept state brought up to date over 1,000 new reviews; each read in a new process, "
                "starting from the stored reliability fit)")
    suffix = "_cached_file" if args.read_through else ""
    for i, (name, fn) in enumerate(reads):
        add_reviews(path, 1000, rng, f"b{i}")
        reliability._EVIDENCE_CACHE.clear()  # what this process fitted is not there for the next
        if args.read_through:
            report.note(f"  (the database file read through first, untimed: {read_through(path):.1f} s)")
        wall, cpu = timed(fn, args.profile, name + " (kept state)", report)
        report.figure(f"readmodels_{name}{suffix}_s", value=wall, limit=LIMIT_S, higher_is_better=False, unit="s")
        if name in before:
            report.note(f"    before {before[name][0]:.3f} s wall / {before[name][1]:.3f} s cpu; "
                        f"after {wall:.3f} / {cpu:.3f}; speed-up x{before[name][0] / wall:.1f}")
    engine.dispose()
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # the working copy (--keep kept its own)


if __name__ == "__main__":
    main()
