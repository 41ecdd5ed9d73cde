"""Marking steps in the browser, keyboard only: a reviewer marks step 2 as an error (category, severity, note,
corrected step), gets a half-finished mark refused with the field named, submits; a second reviewer of the
same version sees none of it until their own review is in."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select
from web import factories

from clinreason.store.tables import reviews

NOTE = "Aspirin is given at 300 mg chewed, not 75 mg."
CORRECTION = "Chewed aspirin 300 mg reduces mortality and is given first."
RATIONALE = ("Step 1: Crushing chest pain for 40 minutes suggests **acute coronary syndrome**.\n"
             "Step 2: Aspirin 75 mg reduces mortality and is given first.\n"
             "Step 3: Beta blockers and clopidogrel come later.\n"
             "Final answer: A")


def _login(page, site, username):
    factories.browser_sign_in(page, site.url, username)


def _mode(page):
    return page.locator("#mode [data-mode]:not([hidden])")


def test_a_reviewer_marks_a_step_keyboard_only_and_a_second_reviewer_stays_blind_to_it(browser, site, artifacts):
    with site.engine.begin() as conn:
        for name in ("alice", "bob"):
            factories.make_user(conn, username=name)
        factories.make_user(conn, username="root", role="admin")
        item_id, rid = factories.make_item(
            conn, project_id=site.project["id"], specialty="Cardiology", rationale_text=RATIONALE,
            question="A 62-year-old man has had crushing substernal chest pain for 40 minutes. Which drug first?")

    # --- alice: keyboard only ------------------------------------------------------------------------------
    alice = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = alice.new_page()
    _login(page, site, "alice")
    page.keyboard.press("n")
    expect(page.locator("#review-form")).to_be_visible()
    steps = page.locator("#rationale > li.step")
    expect(steps).to_have_count(4)
    expect(steps.nth(1)).to_have_attribute("aria-label", "Step 2")
    expect(page.locator("p.final")).to_have_count(0)  # the last step is the final answer: not repeated
    expect(_mode(page)).to_contain_text("Scoring")
    for key in "34343":
        page.keyboard.press(key)

    page.keyboard.press("?")  # the help lists the step keys and the taxonomy
    expect(page.locator("#step-keys")).to_contain_text("mark steps")
    expect(page.locator("#help .taxonomy")).to_contain_text("A medical fact is wrong")
    page.keyboard.press("Escape")

    page.keyboard.press("s")
    expect(_mode(page)).to_contain_text("Marking step 1 of 4")
    expect(steps.nth(0)).to_be_focused()
    page.keyboard.press("]")
    expect(steps.nth(1)).to_be_focused()
    page.keyboard.press("x")
    expect(_mode(page)).to_contain_text("pick the error category")
    expect(steps.nth(1).locator(".cats")).to_contain_text("A medical fact is wrong")  # listed with descriptions
    page.keyboard.press("1")  # factual_error
    expect(_mode(page)).to_contain_text("pick the severity")
    page.keyboard.press("2")  # major; then the note box takes the typing
    expect(steps.nth(1).locator("textarea.step-note")).to_be_focused()
    page.keyboard.type(NOTE)
    page.keyboard.press("Escape")
    expect(steps.nth(1)).to_be_focused()
    page.keyboard.press("w")
    page.keyboard.type(CORRECTION)
    page.keyboard.press("Escape")
    # step 3: an error left half-marked (category, no severity) is refused by the server, naming the field
    page.keyboard.press("ArrowDown")
    page.keyboard.press("x")
    page.keyboard.press("7")  # terminology
    page.keyboard.press("Escape")  # no severity after all
    expect(_mode(page)).to_contain_text("Marking step 3 of 4")
    page.keyboard.press("Escape")
    expect(_mode(page)).to_contain_text("Scoring")
    page.keyboard.press("3")  # scoring mode again: the number keys score (clinical value, the last dimension)
    assert page.locator("#dim-clinical_value input:checked").get_attribute("value") == "3"
    expect(page.locator("#save-status")).to_contain_text("Draft saved")
    page.keyboard.press("r")
    page.keyboard.press("Enter")
    expect(page.locator("#form-error")).to_contain_text("steps[1].severity")
    expect(page.locator("#form-error")).to_contain_text("(step 3)")
    expect(page.locator("#step-3-problem")).to_contain_text("minor, major or critical")
    expect(steps.nth(1).locator("textarea.step-note")).to_have_value(NOTE)  # everything typed is kept
    assert page.locator("#dim-reasoning input:checked").get_attribute("value") == "4"
    expect(_mode(page)).to_contain_text("Marking step 3 of 4")  # straight back to the refused step
    with page.expect_response(lambda r: r.url.endswith("/draft") and r.ok):  # a mark alone is autosaved
        page.keyboard.press("o")  # step 3 is fine after all
    expect(steps.nth(2)).to_have_class(re.compile(r"\bmarked-ok\b"))
    expect(page.locator("#step-3-problem")).to_be_hidden()

    page.goto(f"{site.url}/review")  # a closed tab loses no mark
    expect(page.locator("#save-status")).to_have_text("Draft restored")
    expect(page.locator("#editor")).to_be_hidden()  # the text posted back (CRLF) is no edit
    expect(steps.nth(1)).to_have_class(re.compile(r"\bmarked-error\b"))
    expect(steps.nth(1).locator("input.step-category:checked")).to_have_value("factual_error")
    expect(steps.nth(1).locator("input.step-severity:checked")).to_have_value("major")
    expect(steps.nth(1).locator("textarea.step-note")).to_have_value(NOTE)
    expect(steps.nth(1).locator("textarea.step-correction")).to_have_value(CORRECTION)
    expect(steps.nth(2).locator("input.step-verdict:checked")).to_have_value("ok")
    page.keyboard.press("s")
    page.keyboard.press("]")
    (artifacts / "browser").mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "browser" / "review-step-marks.png"), full_page=True)
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_contain_text("Review saved.")
    alice.close()

    with site.engine.connect() as conn:
        stored = conn.execute(select(reviews.c.steps, reviews.c.verdict).where(reviews.c.rationale_id == rid)).one()
    assert stored.verdict == "regenerate"
    assert stored.steps == [{"step": 2, "verdict": "error", "category": "factual_error", "severity": "major",
                             "note": NOTE, "correction": CORRECTION},
                            {"step": 3, "verdict": "ok"}]

    # --- bob: the second reviewer of the same version, blind to alice's marks ------------------------------
    bob = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = bob.new_page()
    _login(page, site, "bob")
    page.keyboard.press("n")
    expect(page.locator(".source .meta")).to_contain_text("version 1")
    body = page.locator("body").inner_text()
    assert "alice" not in body and NOTE not in body and CORRECTION not in body
    assert page.locator("#rationale input.step-verdict:checked[value='error']").count() == 0
    page.goto(f"{site.url}/items/{item_id}")
    body = page.locator("body").inner_text()
    assert "alice" not in body and NOTE not in body and CORRECTION not in body, "no marks before bob submits"
    assert page.locator(".marks").count() == 0
    page.goto(f"{site.url}/review")
    for key in "55555":
        page.keyboard.press(key)
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_contain_text("Review saved.")
    page.goto(f"{site.url}/items/{item_id}")  # his own review is in: now he sees hers, marks included
    mark = page.locator("#v1-step-2 .marks li")
    expect(mark).to_contain_text("alice")
    expect(mark).to_contain_text("factual_error")
    expect(mark).to_contain_text("major")
    expect(mark).to_contain_text(NOTE)
    expect(mark).to_contain_text(CORRECTION)
    expect(page.locator("#v1-step-3 .marks li")).to_contain_text("ok")
    page.locator("#version-1").screenshot(path=str(artifacts / "browser" / "item-step-marks.png"))
    bob.close()
