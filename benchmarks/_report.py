"""The one way every benchmark reports a figure: a human line, and with `--json` one JSON object a line.

    from _report import Report
    report = Report.from_argv()          # reads --json from sys.argv, leaves the rest to argparse
    report.figure("import_sqlite_items_per_s", value=23100.0, limit=20000.0, higher_is_better=True)

`ratio` is value / limit, so ≥ 1 meets a "at least" limit and ≤ 1 meets an "at most" one; `ok` says which.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field


@dataclass
class Report:
    as_json: bool = False
    figures: list[dict] = field(default_factory=list)

    @classmethod
    def from_argv(cls) -> "Report":
        as_json = "--json" in sys.argv
        if as_json:
            sys.argv.remove("--json")
        return cls(as_json=as_json)

    def figure(self, metric: str, *, value: float, limit: float, higher_is_better: bool, unit: str = "") -> dict:
        ratio = value / limit if limit else float("inf")
        ok = ratio >= 1.0 if higher_is_better else ratio <= 1.0
        row = {"metric": metric, "value": round(value, 4), "limit": round(limit, 4), "ratio": round(ratio, 4), "ok": ok}
        self.figures.append(row)
        if self.as_json:
            print(json.dumps(row), flush=True)
        else:
            sign = "≥" if higher_is_better else "≤"
            print(f"  {metric:<44} {value:>12.4g} {unit:<6} limit {sign} {limit:<10.4g} ratio {ratio:6.3f}  "
                  f"{'ok' if ok else 'MISSED'}", flush=True)
        return row

    def note(self, text: str) -> None:
        """Free text for people; kept off stdout under --json so the JSON lines stay machine-readable."""
        print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)
