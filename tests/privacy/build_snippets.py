"""Turn snippets.src (identifiers marked [[TYPE:text]]) into snippets.jsonl (plain text + gold spans).

    python tests/privacy/build_snippets.py        (run after editing snippets.src; the test checks both agree)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).parent
MARK = re.compile(r"\[\[([A-Z_0-9]+):(.+?)\]\]")


def compile_line(line: str) -> dict | None:
    line = line.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        return None
    lang, _, marked = line.partition(" | ")
    text, spans, pos = "", [], 0
    for m in MARK.finditer(marked):
        text += marked[pos:m.start()]
        spans.append({"start": len(text), "end": len(text) + len(m.group(2)), "type": m.group(1)})
        text += m.group(2)
        pos = m.end()
    text += marked[pos:]
    return {"lang": lang.strip(), "kind": "positive" if spans else "negative", "text": text, "spans": spans}


def compile_source(source: str) -> list[dict]:
    records = [r for r in (compile_line(line) for line in source.splitlines()) if r is not None]
    for n, record in enumerate(records, 1):
        record["id"] = f"{record['lang']}-{n:03d}"
    return records


def main() -> None:
    records = compile_source((HERE / "snippets.src").read_text(encoding="utf-8"))
    with open(HERE / "snippets.jsonl", "w", encoding="utf-8") as out:
        for r in records:
            out.write(json.dumps({"id": r["id"], "lang": r["lang"], "kind": r["kind"], "text": r["text"],
                                  "spans": r["spans"]}, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} snippets")


if __name__ == "__main__":
    main()
