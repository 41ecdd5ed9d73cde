"""The privacy gate's false-hold rate on real exam banks, beside the 1 % target.

    python benchmarks/bench_privacy.py [--reference] [--list] [--json]

Every distinct question of the five banks in ../shared/data (skipped with a note if absent) and of the
bundled samples (src/clinreason/samples) is scanned as its draft request would carry it (question,
options, free-text answer, context; with --reference also the bank's explanation, as
`[generate] use_reference_explanation = true` sends it), with the default settings (min_score 0.5, no
NER model). Exam questions are about invented patients, so every item the gate would hold is a false
hold; the target is at most 1 % of a bank's items (0 for the samples). --list prints each held item and
why. Also reported: scan throughput, so a bank's scan time can be estimated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BANKS = ("medqa", "medmcqa", "pubmedqa", "mmlu_medical", "cmexam")
TARGET = 0.01


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", action="store_true", help="scan the banks' explanations too")
    parser.add_argument("--list", action="store_true", help="print every held item and why")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from clinreason.demo import samples_dir
    from clinreason.stages import privacy

    started = time.perf_counter()
    scanner = privacy.get_scanner()
    build_seconds = time.perf_counter() - started
    sources = [(name, SHARED / name) for name in BANKS if (SHARED / name).is_dir()]
    if not sources:
        print(f"note: {SHARED} is absent: only the bundled samples are measured", file=sys.stderr)
    sources.append(("samples", samples_dir()))
    rows, scanned, scan_seconds = [], 0, 0.0
    for name, path in sources:
        requests = privacy.bank_requests(path, include_reference=args.reference, split="all" if name == "samples" else "test")
        t = time.perf_counter()
        report = privacy.dry_run(requests, scanner)
        scan_seconds += time.perf_counter() - t
        scanned += report["items"]
        target = 0.0 if name == "samples" else TARGET
        rows.append({"bank": name, "items": report["items"], "held": report["would_hold"], "rate": report["rate"],
                     "target": target, "ok": report["rate"] <= target, "by_type": report["by_type"],
                     "held_items": [{"item": h["item"], "found": [{k: f[k] for k in ("type", "segment", "text", "why")}
                                                                  for f in h["found"]]} for h in report["held"]]})
    summary = {"reference": args.reference, "scanner_build_seconds": round(build_seconds, 2),
               "items_per_second": round(scanned / scan_seconds, 1) if scan_seconds else None, "banks": rows}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0 if all(r["ok"] for r in rows) else 1
    what = "question, options, answer text, context" + (", reference explanation" if args.reference else "")
    print(f"privacy gate false-hold rate (scanned: {what}; min_score 0.5; no NER model)")
    print(f"{'bank':<14}{'items':>7}{'held':>6}{'rate':>9}{'target':>9}  result  held for")
    for r in rows:
        types = ", ".join(f"{t} {n}" for t, n in r["by_type"].items()) or "-"
        print(f"{r['bank']:<14}{r['items']:>7}{r['held']:>6}{r['rate']:>9.2%}{r['target']:>9.0%}  "
              f"{'ok' if r['ok'] else 'OVER':<6}  {types}")
        if args.list:
            for h in r["held_items"]:
                print(f"    {h['item']}: " + "; ".join(f"{f['type']} {f['text']!r} in {f['segment']} ({f['why']})"
                                                      for f in h["found"]))
    print(f"scanner built in {build_seconds:.1f} s; {summary['items_per_second']} items/s scanned")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
