"""SQL statements per review on the in-process review path, and where its CPU goes.

    python benchmarks/review_statements.py [--items 1000] [--profile FILE] [--top 30]

Runs `clinreason simulate --policy fixed-1` (the real lease, submit, consensus and regeneration code on a
scratch SQLite database) with a SQLAlchemy `before_cursor_execute` listener that counts the statements run
inside each lease (`assign_next_review`) and each submission (`submit_review`), then prints statements
per lease, per submission and per review, the most frequent statements, and the top of a cProfile of the
whole run (cumulative). Not a `bench_*` script: it has no limit to compare with (issue #16 reports
29 statements per review before its changes, 20 after).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import Counter

from sqlalchemy import Engine, event

from clinreason.stages import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--profile", help="also write the cProfile to this file")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    phase: list[str | None] = [None]
    statements: Counter[str] = Counter()
    texts: Counter[tuple[str, str]] = Counter()
    calls: Counter[str] = Counter()

    @event.listens_for(Engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if phase[0] is not None:
            statements[phase[0]] += 1
            texts[(phase[0], " ".join(statement.split()[:7])[:90])] += 1

    def counted(name: str, method):  # noqa: ANN001, ANN202
        def wrapper(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            phase[0] = name
            calls[name] += 1
            try:
                return method(*a, **kw)
            finally:
                phase[0] = None
        return wrapper

    simulate.DirectReviews.take = counted("lease", simulate.DirectReviews.take)  # type: ignore[method-assign]
    simulate.DirectReviews.submit = counted("submit", simulate.DirectReviews.submit)  # type: ignore[method-assign]
    profile = cProfile.Profile()
    cpu = time.process_time()
    profile.enable()
    result = simulate.run_simulation(policy="fixed-1", n_items=args.items, seed=0)
    profile.disable()
    cpu = time.process_time() - cpu
    print(f"{args.items} items, {result.reviews} reviews, {cpu:.1f} s CPU")
    for name in ("lease", "submit"):
        print(f"statements per {name}: {statements[name] / max(calls[name], 1):.2f}")
    print(f"statements per review (lease + submit): {sum(statements.values()) / max(result.reviews, 1):.2f}")
    print("most frequent statements (per call of their phase):")
    for (name, text), n in texts.most_common(args.top):
        print(f"  {name:6} {n / max(calls[name], 1):6.2f}  {text}")
    if args.profile:
        profile.dump_stats(args.profile)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
