"""Temporary (removed before merge): build src/clinreason/locale/zh/LC_MESSAGES/messages.po from the
extracted template and the zh translations in i18n-parts/*.json ({msgid: msgstr}); compile it; list
what is still untranslated. Run: PYTHONPATH=src /work/main/.venv/bin/python i18n-parts/merge.py"""
import json
import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "src/clinreason/locale"
PYBABEL = str(Path(sys.executable).with_name("pybabel"))
subprocess.run([PYBABEL, "extract", "-F", "babel.cfg", "--no-location", "--sort-output", "--project", "clinreason",
                "-o", str(LOCALE / "messages.pot"), "."], cwd=ROOT, check=True)
with (LOCALE / "messages.pot").open("rb") as fh:
    catalog = read_po(fh, locale="zh_Hans_CN")
catalog.locale  # noqa
known: dict[str, str] = {}
for part in sorted((ROOT / "i18n-parts").glob("*.json")):
    known.update(json.loads(part.read_text(encoding="utf-8")))
po = LOCALE / "zh/LC_MESSAGES/messages.po"
if po.exists():
    with po.open("rb") as fh:
        for m in read_po(fh):
            if m.id and m.string and not m.fuzzy:
                key = m.id if isinstance(m.id, str) else m.id[0]
                known.setdefault(key, m.string if isinstance(m.string, str) else m.string[0])
missing = []
for m in catalog:
    if not m.id:
        continue
    key = m.id if isinstance(m.id, str) else m.id[0]
    if key in known:
        m.string = known[key] if isinstance(m.id, str) else tuple([known[key]] * catalog.num_plurals)
    else:
        missing.append(key)
po.parent.mkdir(parents=True, exist_ok=True)
catalog.locale_identifier  # noqa
with po.open("wb") as fh:
    write_po(fh, catalog, omit_header=False, sort_output=True, width=120)
with po.with_suffix(".mo").open("wb") as fh:
    write_mo(fh, catalog)
print(f"{len(catalog) - len(missing)} translated, {len(missing)} missing")
for key in missing:
    print("MISSING:", json.dumps(key, ensure_ascii=False))
