"""The review screen, its partials and the item history in Chinese and in English: the chrome, the rubric's
titles, descriptions and anchors, the step error taxonomy, the notices, the autosave status, the refused-form
message and what app.js says, all in the reader's language; user data stays as it was written."""

from __future__ import annotations

import json
import re
from html import unescape

from clinreason.web import auth
from web.factories import SCORES, browser_login, csrf_of
from web.test_catalogue import MUST_NOT_SHOW_IN_ZH, chrome

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
TEXT = ("Step 1: chest pain in a 60-year-old suggests acute coronary syndrome.\n"
        "Step 2: aspirin 300 mg chewed is given first.\n"
        "Final answer: A")


def _zh_reviewer(seed, engine, name="li"):
    """A reviewer whose own language setting is Chinese (no Accept-Language needed)."""
    user = seed.user(name)
    with engine.begin() as conn:
        auth.set_language(conn, user_id=user["id"], language="zh")
    return user


def _lease(client, user, **headers):
    r = client.get("/api/queue/next", headers={**user["auth"], **headers})
    assert r.status_code == 200, r.text
    return r.json()


def _no_english_labels(html: str, where: str) -> None:
    texts = chrome(html)  # text nodes and title / placeholder / aria-label / alt / value attributes
    for label in MUST_NOT_SHOW_IN_ZH:
        assert not any(label in t for t in texts), (where, label, [t for t in texts if label in t][:3])


def test_the_review_screen_in_zh_shows_none_of_the_english_labels_and_the_rubric_in_chinese(client, seed, engine):
    user = _zh_reviewer(seed, engine)
    seed.item(rationale_text=TEXT, question="A 60-year-old has crushing chest pain.")
    _lease(client, user)
    r = client.get("/review", headers=user["auth"])
    assert r.status_code == 200 and r.headers["content-language"] == "zh-Hans"
    html = r.text
    _no_english_labels(html, "/review")
    texts = chrome(html)
    for label in ("通过", "重新生成", "标记题目有误", "自动检查", "总体意见", "键盘快捷键", "标准答案："):
        assert any(label in t for t in texts), label
    # the rubric in the reader's language: titles, descriptions and every anchor (the default rubric is bilingual)
    assert "医学准确性" in html and "医学事实正确，符合指南" in html
    assert "危险或错误：存在可能伤害患者的事实错误，或答案错误。" in html  # anchor 1 of correctness
    assert 'title="介于 1 与 3 之间"' in html, "the anchors are the score buttons' tooltips too"
    assert "Dangerous or wrong" not in html and "{&#39;en&#39;" not in html, "no English anchor, no dict printed"
    # the step error taxonomy in Chinese; its codes stay codes
    assert 'value="factual_error"' in html
    assert 'aria-label="第 1 步"' in html and 'placeholder="第 2 步错在哪里？"' in html
    # user data is not translated
    assert "A 60-year-old has crushing chest pain." in html and "aspirin 300 mg chewed" in html


def test_the_review_screen_in_english_prints_the_rubric_texts_not_their_language_tables(client, seed):
    user = seed.user("alice")
    seed.item(rationale_text=TEXT)
    _lease(client, user)
    html = client.get("/review", headers={**user["auth"], "Accept-Language": "en"}).text
    assert "<kbd>1</kbd> Medical correctness" in html and "医学准确性" not in html
    assert "Dangerous or wrong: a factual error" in html and "{&#39;en&#39;" not in html
    assert 'title="between 1 and 3"' in html
    assert "Accept <kbd>a</kbd>" in html and "A medical fact is wrong" in html


def test_the_scripts_messages_come_from_the_page_in_the_readers_language(client, seed, engine):
    user = _zh_reviewer(seed, engine)
    seed.item(rationale_text=TEXT)
    _lease(client, user)
    html = client.get("/review", headers=user["auth"]).text
    held = re.search(r"<div class=\"review\" id=\"review\" [^>]*data-messages='([^']*)'", html)
    assert held, "app.js reads its messages from the page's data (no inline script: the CSP forbids it)"
    messages = json.loads(unescape(held.group(1)))
    assert messages["scoreFirst"] == "请先为每个维度打分：“{dim}”尚未评分。"
    assert messages["stepOf"] == "{step} / {total}" and "{step}" in messages["notAnError"]
    assert 'data-title="医学准确性"' in html, "the missing-score message names the dimension by its title"
    assert 'data-label="通过"' in html, "the confirmation names the verdict as its button does"
    english = client.get("/review", headers={**seed.user("bob")["auth"]}).text  # bob holds no lease: idle page
    assert "data-messages" not in english


def test_notices_autosave_and_a_refused_form_are_in_chinese(client, seed, engine):
    _zh_reviewer(seed, engine, name="alice")
    seed.item(rationale_text=TEXT)
    browser_login(client, "alice")
    token = csrf_of(client.get("/review").text)
    page = client.post("/review/next", data={"csrf_token": token}, follow_redirects=True).text
    aid = page.split('data-assignment="', 1)[1].split('"', 1)[0]
    saved = client.post(f"/review/{aid}/draft", data={"csrf_token": token, "score.correctness": "4"})
    assert saved.status_code == 200 and saved.text.startswith("草稿已保存 ") and saved.text.endswith(" UTC")
    assert "草稿已保存" not in client.get("/review").text and "已恢复草稿" in client.get("/review").text
    scores = {f"score.{k}": str(v) for k, v in SCORES.items()}
    refused = client.post(f"/review/{aid}/submit", data={"csrf_token": token, "verdict": "accept", **scores,
                                                         "edited_text": TEXT + "\nStep 3: nitrates."})
    assert refused.status_code == 422
    assert "edited_text: 结论为 &#39;accept&#39; 却提供了修改后的文本" in refused.text, "the field named, the problem in zh"
    assert "Step 3: nitrates." in refused.text, "what was typed is kept"
    bad_mark = client.post(f"/review/{aid}/submit", data={
        "csrf_token": token, "verdict": "regenerate", **scores, "edited_text": TEXT,
        "step.2.verdict": "error", "step.2.category": "factual_error", "step.2.severity": "major"})
    assert bad_mark.status_code == 422 and "steps[0].note" in bad_mark.text
    assert "（第 2 步）" in bad_mark.text
    diff = client.post(f"/review/{aid}/diff", data={"csrf_token": token, "edited_text": TEXT + "\nmore"})
    assert "待审版本" in diff.text and "您的修改" in diff.text and "新增 1 行" in diff.text
    done = client.post(f"/review/{aid}/submit", follow_redirects=True, data={
        "csrf_token": token, "verdict": "accept", **scores, "edited_text": TEXT})
    assert "审核已保存。" in done.text and "Review saved." not in done.text
    released = client.post("/review/next", data={"csrf_token": token}, follow_redirects=True)
    assert "目前没有需要您审核的题目" in released.text


def test_the_idle_page_in_zh_shows_the_rubric_and_the_queue_in_chinese(client, seed, engine):
    user = _zh_reviewer(seed, engine)
    html = client.get("/review", headers=user["auth"]).text
    _no_english_labels(html, "/review (idle)")
    assert "下一题" in html and "医学准确性" in html and "您已在本项目中提交" in html
    english = client.get("/review", headers={**seed.user("sam")["auth"], "Accept-Language": "en"}).text
    assert "You have submitted <strong id=\"my-reviews\">0</strong> reviews in this project" in english
    assert "Medical correctness" in english and "Next item" in english


def test_the_item_page_in_zh_names_codes_dimensions_and_verdicts_in_chinese(client, seed, engine):
    alice = seed.user("alice")
    root = seed.user("root", role="admin")
    item_id, _ = seed.item(rationale_text=TEXT)
    aid = _lease(client, alice)["assignment_id"]
    r = client.post(f"/api/assignments/{aid}/review", headers=alice["auth"], json={
        "verdict": "regenerate", "scores": SCORES, "comments": {"general": "check the dose", "correctness": "ok-ish"},
        "steps": [{"step": 2, "verdict": "error", "category": "factual_error", "severity": "major", "note": "dose"}]})
    assert r.status_code == 201, r.text
    html = client.get(f"/items/{item_id}", headers={**root["auth"], **ZH}).text
    _no_english_labels(html, "/items")
    assert "审核中" in html, "the item's state by its name"
    assert "<td>重新生成</td>" in html, "the verdict as the review screen's button names it"
    assert "医学准确性 5" in html and "总体意见:</span> check the dose" in html
    assert "严重" in html and 'class="badge sev">严重</span>' in html and "factual_error" in html
    assert "模型生成" in html and "v1（模型生成）" in html
    en = client.get(f"/items/{item_id}", headers={**root["auth"], "Accept-Language": "en"}).text
    assert "<td>Regenerate</td>" in en and "Medical correctness 5" in en and "General comment:</span>" in en


def test_every_code_the_pages_name_has_a_label():
    from clinreason.domain.lifecycle import ItemState
    from clinreason.domain.records import Origin, Verdict
    from clinreason.domain.steps import Severity, StepVerdict
    from clinreason.web import views

    for kind, codes in (("state", ItemState), ("origin", Origin), ("verdict", Verdict), ("severity", Severity),
                        ("mark", StepVerdict)):
        assert set(views.LABELS[kind]) == {c.value for c in codes}, kind
    assert views.label("state", "no_such_state") == "no_such_state" and views.label("origin", None) == ""
