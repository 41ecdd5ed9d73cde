"""The review screen in Chinese, keyboard only: a reviewer whose own language setting is Chinese (the browser
asks for English) scores, comments and submits; every label, the rubric and what the script says are in
Chinese. Then the same reviewer in English. Screenshots of the review screen and the item history in both
languages go to test-artifacts/browser/. Assertions read the DOM's text, never the rendered glyphs (CJK
fonts are the CI image's business: fonts-noto-cjk)."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import insert, select
from web import factories

from clinreason.store import items as item_store
from clinreason.store import rationales as rationale_store
from clinreason.store.common import now
from clinreason.store.rationales import NewVersion
from clinreason.store.tables import item_sources, reviews
from clinreason.web import auth

RATIONALE = ("Step 1: Crushing chest pain for 40 minutes suggests **acute coronary syndrome**.\n"
             "Step 2: Aspirin reduces mortality and is given first.\n"
             "Final answer: A")
COMMENT = "阿司匹林的剂量没有说明（应为 300 mg 嚼服）。"


def _item(conn, project_id, question, specialty):
    item_id, _ = factories.make_item(conn, project_id=project_id, question=question, specialty=specialty)
    item = item_store.get_item(conn, project_id=project_id, item_id=item_id)
    rationale_store.add_version(conn, NewVersion(  # a model's draft, stored with its reasoning beside it
        item=item, origin="regenerated", author="model:fake-drafter", text=RATIONALE,
        parsed={"steps": RATIONALE.splitlines(), "final_answer": ["A"]},
        reasoning="The patient is 62 with ischaemic pain; aspirin first, then the rest."))
    conn.execute(insert(item_sources).values(item_id=item_id, source="medqa", subject="Cardiology",
                                             file="US/test.jsonl", record="17", license="MIT", imported_at=now()))
    return item_id


def _visible_mode(page):
    return page.locator("#mode [data-mode]:not([hidden])")


def test_a_chinese_reviewer_scores_comments_and_submits_keyboard_only_then_works_in_english(browser, site, artifacts):
    with site.engine.begin() as conn:
        li = factories.make_user(conn, username="li")
        auth.set_language(conn, user_id=li["id"], language="zh")
        first = _item(conn, site.project["id"], "A 62-year-old man has crushing chest pain. Which drug first?",
                      "Cardiology")
        second = _item(conn, site.project["id"], "A 70-year-old woman has chest pain at rest. Which drug first?",
                       "Cardiology")
    (artifacts / "browser").mkdir(exist_ok=True)
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    factories.browser_sign_in(page, site.url, "li")

    # --- in Chinese: her own setting wins over the browser's English -------------------------------------
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(page.locator("#next-item")).to_contain_text("下一题")
    page.keyboard.press("n")
    expect(page.locator("#review-form")).to_be_visible()
    expect(page.locator("#question")).to_contain_text("A 62-year-old man")  # the question as written
    expect(page.locator("#item-specialty")).to_have_text("专科：Cardiology")
    expect(page.locator("#item-sources")).to_contain_text("来源：")
    expect(page.locator("#item-sources")).to_contain_text("medqa · Cardiology (US/test.jsonl #17)")
    expect(page.locator("#reasoning summary")).to_contain_text("模型的思考过程（草稿，不属于推理过程正文）")
    expect(page.locator("#reasoning .md")).to_be_hidden()  # folded until asked for
    expect(page.locator("#dim-correctness legend")).to_contain_text("医学准确性")
    expect(page.locator("#dim-correctness .desc")).to_contain_text("医学事实正确，符合指南")
    expect(page.locator("#verdict-accept")).to_contain_text("通过")
    expect(page.locator("#verdict-regenerate")).to_contain_text("重新生成")
    expect(page.locator("#verdict-flag_question")).to_contain_text("标记题目有误")
    expect(page.locator(".hints")).to_contain_text("自动检查")
    expect(page.locator("label.general")).to_contain_text("总体意见")
    expect(_visible_mode(page)).to_contain_text("评分")
    body = page.locator("body").inner_text()
    for english in ("Sign out", "Next item", "Accept", "Regenerate", "Flag question", "Automatic checks",
                    "General comment", "Medical correctness"):
        assert english not in body, english

    page.keyboard.press("a")  # nothing scored yet: the script refuses, in Chinese
    expect(page.locator("#confirm-verdict")).to_have_text("通过")
    page.keyboard.press("Enter")
    expect(page.locator("#client-error")).to_have_text("请先为每个维度打分：“医学准确性”尚未评分。")
    page.keyboard.press("s")  # step mode, named in Chinese
    expect(_visible_mode(page)).to_contain_text("正在标注第 1 / 3 步")
    page.keyboard.press("Escape")
    expect(_visible_mode(page)).to_contain_text("评分")
    for key in "54545":
        page.keyboard.press(key)
    page.keyboard.press("c")  # a comment on the highlighted dimension (clinical value), typed in Chinese
    page.keyboard.type(COMMENT)
    page.keyboard.press("Escape")
    expect(page.locator("#save-status")).to_contain_text("草稿已保存")
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    expect(page.locator("#help h2")).to_have_text("键盘快捷键")
    expect(page.locator("#step-keys")).to_contain_text("标注步骤")
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.screenshot(path=str(artifacts / "browser" / "review-zh.png"), full_page=True)
    page.keyboard.press("a")
    expect(page.locator("#confirm")).to_contain_text("提交“通过”？")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_have_text("审核已保存。")
    expect(page.locator("#last-review")).to_contain_text(first)  # and the next item is open
    expect(page.locator("#question")).to_contain_text("A 70-year-old woman")

    with site.engine.connect() as conn:
        mine = conn.execute(select(reviews.c.scores, reviews.c.comments, reviews.c.verdict)
                            .where(reviews.c.item_id == first)).one()
    assert mine.verdict == "accept" and mine.comments == {"clinical_value": COMMENT}
    assert mine.scores == {"correctness": 5, "reasoning": 4, "sufficiency": 5, "terminology": 4, "clinical_value": 5}

    page.goto(f"{site.url}/items/{first}")
    expect(page.locator("h1")).to_have_text(f"题目 {first}")
    expect(page.locator("#item-state")).to_have_text("审核中")
    expect(page.locator("#version-2 .review-row")).to_contain_text("通过")
    expect(page.locator("#version-2 .review-row")).to_contain_text("医学准确性 5")
    expect(page.locator("#version-2 .review-row")).to_contain_text(COMMENT)
    expect(page.locator("#version-2 .changes summary")).to_have_text("与 v1 的差异")
    expect(page.locator("#events")).to_contain_text("review.submitted")  # event codes stay codes
    page.screenshot(path=str(artifacts / "browser" / "item-zh.png"), full_page=True)
    page.goto(f"{site.url}/dashboard")
    expect(page.locator("h1")).to_contain_text("进度")
    expect(page.locator("#by-state")).to_contain_text("审核中")
    page.screenshot(path=str(artifacts / "browser" / "dashboard-zh.png"), full_page=True)

    # --- the same reviewer in English ------------------------------------------------------------------------
    with site.engine.begin() as conn:
        auth.set_language(conn, user_id=li["id"], language="en")
    page.goto(f"{site.url}/review")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#verdict-accept")).to_contain_text("Accept")
    expect(page.locator("#dim-correctness legend")).to_contain_text("Medical correctness")
    expect(page.locator("#reasoning summary")).to_contain_text(
        "Model's reasoning trace (scratch work, not part of the rationale)")
    expect(page.locator("#item-specialty")).to_have_text("Specialty: Cardiology")
    expect(page.locator("#my-progress")).to_contain_text("Reviews today")
    expect(page.locator("#progress-today")).to_have_text("1")
    for key in "55555":
        page.keyboard.press(key)
    page.keyboard.press("c")
    page.keyboard.type("Clear and complete.")
    page.keyboard.press("Escape")
    expect(page.locator("#save-status")).to_contain_text("Draft saved")
    page.screenshot(path=str(artifacts / "browser" / "review-en.png"), full_page=True)
    page.keyboard.press("a")
    expect(page.locator("#confirm")).to_contain_text("Submit Accept?")
    page.keyboard.press("Enter")
    expect(page.locator(".notice")).to_have_text("Review saved.")
    page.goto(f"{site.url}/items/{second}")
    expect(page.locator("h1")).to_have_text(f"Item {second}")
    expect(page.locator("#version-2 .review-row")).to_contain_text("Medical correctness 5")
    page.screenshot(path=str(artifacts / "browser" / "item-en.png"), full_page=True)
    page.goto(f"{site.url}/dashboard")
    expect(page.locator("h1")).to_contain_text("Progress")
    expect(page.locator("#by-state")).to_contain_text("in review")
    page.screenshot(path=str(artifacts / "browser" / "dashboard-en.png"), full_page=True)
    context.close()
