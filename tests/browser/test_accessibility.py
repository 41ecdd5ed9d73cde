"""Every page passes axe-core (the engine shipped inside axe-playwright-python; nothing is downloaded) with
no critical and no serious violation, in English and in Chinese. The counts by impact for every page are
written to test-artifacts/accessibility/axe-report.json (the closing note quotes them)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from web import factories

from clinreason.store import privacy as privacy_store
from clinreason.web import auth

PAGES = {  # path -> who looks at it
    "/login": None, "/review": "rita", "/items/{item}": "adam", "/dashboard": "adam", "/adjudicate": "adam",
    "/admin": "adam", "/admin/users": "adam", "/admin/projects": "adam", "/admin/rubric": "adam",
    "/admin/import": "adam", "/admin/privacy": "adam", "/admin/privacy/{held}": "adam",
}
MRN_QUESTION = "MRN 00456789. A 45-year-old man has chest pain. Which is the most likely diagnosis?"
REPORT: dict[str, dict[str, dict[str, int]]] = {}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_page_has_no_critical_or_serious_axe_violation(browser, site, artifacts, lang):
    from axe_playwright_python.sync_playwright import Axe

    with site.engine.begin() as conn:
        item_id, _rid = factories.make_item(conn, project_id=site.project["id"])
        factories.make_item(conn, project_id=site.project["id"])
        held_id, _rid = factories.make_item(conn, project_id=site.project["id"], state="held", question=MRN_QUESTION)
        start = MRN_QUESTION.index("00456789")
        privacy_store.add_hold(conn, project_id=site.project["id"], item_id=held_id, kind="draft", gate="block",
                               status="held", resume_state="imported", endpoint="https://api.example.com/v1",
                               actor="worker", findings=[{
                                   "segment": "question", "type": "MEDICAL_RECORD_NUMBER", "start": start,
                                   "end": start + 8, "score": 0.9, "recognizer": "mrn", "why": "MRN before a number",
                                   "digest": "0" * 16, "preview": "0000****"}])
        for name, role in (("rita", "reviewer"), ("adam", "admin")):
            uid = factories.make_user(conn, username=name, role=role)["id"]
            auth.set_language(conn, user_id=uid, language=lang)
    axe = Axe()
    failures: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    contexts = {}
    for path, who in PAGES.items():
        if who not in contexts:
            ctx = browser.new_context(locale="zh-CN" if lang == "zh" else "en-US", viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            if who:
                factories.browser_sign_in(page, site.url, who)
            contexts[who] = page
        page = contexts[who]
        page.goto(site.url + path.replace("{item}", item_id).replace("{held}", held_id))
        assert page.locator("h1").count() >= 1, path  # the page itself, not an error page
        page.wait_for_load_state("networkidle")
        assert page.locator("html").get_attribute("lang") == ("zh-Hans" if lang == "zh" else "en"), path
        results = axe.run(page)
        by_impact = Counter(v["impact"] or "none" for v in results.response["violations"])
        counts[path] = dict(sorted(by_impact.items()))
        for v in results.response["violations"]:
            if v["impact"] in ("critical", "serious"):
                targets = [n["target"] for n in v["nodes"][:3]]
                failures.append(f"{lang} {path}: {v['impact']} {v['id']} ({v['help']}) at {targets}")
    for page in contexts.values():
        page.context.close()
    REPORT[lang] = counts
    out = artifacts / "accessibility"
    out.mkdir(exist_ok=True)
    (out / "axe-report.json").write_text(json.dumps(REPORT, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert not failures, "\n".join(failures)
