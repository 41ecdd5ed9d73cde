"""What reviewers and admins do in the browser, keyboard only where reviewers are concerned."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from web import factories

EVIL = ('<script>alert("xss-script")</script> <img src=x onerror=alert("xss-img")> '
        '[click me](javascript:alert("xss-link")) <a href="javascript:alert(1)" onclick="alert(2)">a</a>')


def _login(page, site, username):
    factories.browser_sign_in(page, site.url, username)


def test_reviewer_scores_with_the_keyboard_edits_and_submits_then_a_second_reviewer_and_an_admin_follow(
        browser, site, artifacts):
    with site.engine.begin() as conn:
        for name in ("alice", "bob"):
            factories.make_user(conn, username=name)
        factories.make_user(conn, username="root", role="admin")
        item_id, _ = factories.make_item(
            conn, project_id=site.project["id"], specialty="Cardiology",
            question="A 62-year-old man has had crushing substernal chest pain for 40 minutes. Which drug first?",
            rationale_text="Step 1: The history suggests **acute coronary syndrome**.\n"
                           "Step 2: Aspirin reduces mortality and is given first.\nFinal answer: A")

    # --- alice: keyboard only ------------------------------------------------------------------------------
    alice = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = alice.new_page()
    _login(page, site, "alice")
    expect(page.locator("#next-item")).to_be_visible()
    page.keyboard.press("n")
    expect(page.locator("#review-form")).to_be_visible()
    expect(page.locator("#rationale strong")).to_have_text("acute coronary syndrome")
    for key in "54545":
        page.keyboard.press(key)
    # scoring the last dimension leaves it highlighted; k goes back one (terminology) to rescore it
    page.keyboard.press("k")
    page.keyboard.press("3")
    checked = {dim: page.locator(f"#dim-{dim} input:checked").get_attribute("value") for dim in factories.SCORES}
    assert checked == {"correctness": "5", "reasoning": "4", "sufficiency": "5", "terminology": "3",
                       "clinical_value": "5"}
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.keyboard.press("d")  # the anchors of the highlighted dimension (now clinical value), on demand
    expect(page.locator("fieldset.dim.active details.anchors dl")).to_be_visible()
    page.keyboard.press("c")
    page.keyboard.type("Nitrates are not mentioned.")
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    expect(page.locator("#edited-text")).to_be_focused()
    page.keyboard.press("Control+End")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("End")
    page.keyboard.type("\nStep 3: Sublingual nitrates relieve ischaemic pain.")
    expect(page.locator("#diff ins").first).to_contain_text("Sublingual nitrates")
    expect(page.locator("#save-status")).to_contain_text("Draft saved")
    page.screenshot(path=str(artifacts / "review-screen-editing.png"), full_page=True)
    page.locator("#editor").screenshot(path=str(artifacts / "review-editor-diff.png"))

    # a closed tab loses nothing: reopen the review page, everything is still there
    page.close()
    page = alice.new_page()
    page.goto(f"{site.url}/review")
    expect(page.locator("#save-status")).to_have_text("Draft restored")
    assert page.locator("#dim-terminology input:checked").get_attribute("value") == "3"
    assert "Step 3: Sublingual nitrates" in page.locator("#edited-text").input_value()
    assert page.locator("textarea[name='comment.clinical_value']").input_value() == "Nitrates are not mentioned."
    page.keyboard.press("e")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".notice")).to_contain_text("saved as a new version")
    expect(page.locator("#next-item")).to_be_visible()
    page.keyboard.press("n")
    expect(page.locator(".notice")).to_contain_text("Nothing to review for you right now")
    alice.close()

    # --- bob: gets the edited version, blind to alice ------------------------------------------------------
    bob = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = bob.new_page()
    _login(page, site, "bob")
    page.keyboard.press("n")
    expect(page.locator("#rationale")).to_contain_text("Step 3: Sublingual nitrates relieve ischaemic pain.")
    expect(page.locator(".source .meta")).to_contain_text("version 2 · edited")
    body = page.locator("body").inner_text()
    assert "alice" not in body and "Nitrates are not mentioned." not in body
    page.screenshot(path=str(artifacts / "review-screen.png"), full_page=True)
    page.goto(f"{site.url}/items/{item_id}")
    body = page.locator("body").inner_text()
    assert "alice" not in body and "Nitrates are not mentioned." not in body, "no scores, comments or names yet"
    page.goto(f"{site.url}/review")
    page.keyboard.press("a")
    expect(page.locator("#confirm")).to_be_visible()
    page.keyboard.press("Enter")  # not every dimension scored yet: refused with a message, nothing sent
    expect(page.locator("#client-error")).to_contain_text("has no score")
    for key in "55555":
        page.keyboard.press(key)
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_contain_text("Review saved.")
    bob.close()

    # --- root (admin): the whole history with the diff -----------------------------------------------------
    admin = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = admin.new_page()
    _login(page, site, "root")
    page.goto(f"{site.url}/items/{item_id}")
    expect(page.locator("#version-2 .changes summary")).to_have_text("Diff to v1")
    expect(page.locator("#version-2 table.diff ins")).to_contain_text("Step 3: Sublingual nitrates")
    expect(page.locator("#version-1 .review-row")).to_contain_text("alice")
    expect(page.locator("#version-1 .review-row")).to_contain_text("Nitrates are not mentioned.")
    expect(page.locator("#version-2 .review-row")).to_contain_text("bob")
    expect(page.locator("#events")).to_contain_text("item.transition")
    page.screenshot(path=str(artifacts / "item-history.png"), full_page=True)
    admin.close()


def test_script_event_handlers_and_javascript_links_in_questions_and_rationales_stay_inert(browser, site, artifacts):
    with site.engine.begin() as conn:
        factories.make_user(conn, username="alice")
        factories.make_user(conn, username="root", role="admin")
        item_id, _ = factories.make_item(
            conn, project_id=site.project["id"], question="Imported question " + EVIL,
            options=[["A", "Option " + EVIL], ["B", "Plain option"]],
            rationale_text="LLM rationale " + EVIL + "\n\nFinal answer: A",
            check_rows=[("judge:correctness", True, 4.0, "judge says " + EVIL)])
    dialogs = []
    for user, path in (("alice", "/review"), ("root", f"/items/{item_id}")):
        context = browser.new_context()
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        _login(page, site, user)
        if user == "alice":
            page.keyboard.press("n")
            expect(page.locator("#review-form")).to_be_visible()
        else:
            page.goto(site.url + path)
        page.wait_for_load_state("networkidle")
        found = page.evaluate("""() => ({
            scripts: [...document.scripts].map(s => s.src || 'inline'),
            handlers: [...document.querySelectorAll('*')].flatMap(
                el => [...el.attributes].filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name)),
            jsLinks: [...document.querySelectorAll('[href],[src],[action]')].map(
                el => el.getAttribute('href') || el.getAttribute('src') || el.getAttribute('action'))
                .filter(v => /^\\s*javascript:/i.test(v)),
            images: document.images.length,
        })""")
        assert found["handlers"] == [] and found["jsLinks"] == [] and found["images"] == 0
        assert all(re.search(r"/static/(htmx\.min|app)\.js$", s) for s in found["scripts"]), found["scripts"]
        text = page.locator("main").inner_text()
        assert '<script>alert("xss-script")</script>' in text, "the markup is shown as text"
        if user == "alice":
            page.screenshot(path=str(artifacts / "review-screen-untrusted-text.png"), full_page=True)
        context.close()
    assert dialogs == []
