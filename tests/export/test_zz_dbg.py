import sys
sys.path.insert(0, "/work/next/tests/export")
from test_annotation_roundtrip import *  # noqa

def test_dbg(engine, project, copy_project, tmp_path):
    built = _build(engine)
    out = tmp_path / "argilla"
    run_export(engine, project="default", out=out, opts=ExportOptions(fmt="argilla"))
    import_path(engine, project="copy", path=out, fmt="auto")
    source = {h: s for h, s in _story(engine, "default", rename=lambda n: f"{pseudonym(built['salt'], n)}@argilla").items() if s["state"] == "accepted"}
    copied = _story(engine, "copy")
    for h, item in source.items():
        for a, b in zip(item["versions"], copied[h]["versions"]):
            for k in a:
                if a[k] != b[k]:
                    print("DIFF", k, repr(a[k])[:300], "|||", repr(b[k])[:300])
