"""The review app in Chinese and English: which language a request gets (the user's setting, then the
pre-sign-in cookie, then Accept-Language, then the project's `[project] language`), what the pages other
than the review screen show in each, and the API's error messages (`detail`) in the same language with
field names and codes left as they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinreason.domain.rubric import DEFAULT_RUBRIC_DICT
from web.conftest import SECRET
from web.factories import SCORES, browser_login, csrf_of

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en"}
#: English labels of the review screen and the header that no Chinese page may still show
NOT_IN_CHINESE = ("Sign out", "Next item", "Accept", "Regenerate", "Flag question", "Automatic checks",
                  "General comment", "Medical correctness")
HAN = re.compile(r"[\u4e00-\u9fff]")


def visible(html: str) -> str:
    """The page less its scripts and styles: its text and attribute values (title=, aria-label=, ...)."""
    return re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)


def h1(html: str) -> str:
    match = re.search(r"<h1>(.*?)</h1>", html, flags=re.S)
    assert match, "the page has no <h1>"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def lang_of(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match
    return match.group(1)


def set_language(engine, user: dict, language: str | None) -> None:
    from clinreason.store import accounts

    with engine.begin() as conn:
        accounts.set_language(conn, user_id=user["id"], language=language)


# --- which language a request gets --------------------------------------------------------------

def test_the_order_of_the_choice_is_user_cookie_browser_project():
    from clinreason.web.i18n import choose

    assert choose(user="zh", cookie="en", accept_language="en", project="en") == "zh"
    assert choose(user=None, cookie="zh", accept_language="en", project="en") == "zh"
    assert choose(user=None, cookie=None, accept_language="en-GB,zh;q=0.8", project="zh") == "en"
    assert choose(user=None, cookie=None, accept_language="fr-FR, zh-Hans;q=0.4", project="en") == "zh"
    assert choose(user=None, cookie=None, accept_language="fr-FR", project="zh") == "zh"
    assert choose(user=None, cookie=None, accept_language=None, project=None) == "en"


@pytest.fixture
def zh_project_app(engine, project, db_url, tmp_path):
    """The app of a project whose `[project] language` is zh."""
    from clinreason.config import ProjectConfig, ProjectSection, Settings
    from clinreason.web import create_app
    from clinreason.web.auth import AuthConfig

    settings = Settings(db_url=db_url, project="default", config_path=Path(tmp_path / "clinreason.toml"),
                        project_config=ProjectConfig(project=ProjectSection(language="zh")))
    return create_app(settings, engine=engine, auth_config=AuthConfig(secret_key=SECRET))


def test_each_source_of_the_language_beats_the_next_over_http(zh_project_app, seed, engine):
    from fastapi.testclient import TestClient

    alice = seed.user("alice")
    with TestClient(zh_project_app) as client:
        # nothing chosen: the project's language
        assert h1(client.get("/login").text) == "登录"
        # the browser's Accept-Language beats the project's
        assert h1(client.get("/login", headers=EN).text) == "Sign in"
        # the cookie of the language links beats the browser
        assert h1(client.get("/login", headers={**EN, "Cookie": "clinreason_lang=zh"}).text) == "登录"
        assert h1(client.get("/login", headers={**ZH, "Cookie": "clinreason_lang=en"}).text) == "Sign in"
        # the signed-in user's own setting beats the cookie (and the rest)
        set_language(engine, alice, "en")
        page = client.get("/dashboard", headers={**alice["auth"], **ZH, "Cookie": "clinreason_lang=zh"})
        assert lang_of(page.text) == "en" and h1(page.text).startswith("Progress")
        set_language(engine, alice, "zh")
        page = client.get("/dashboard", headers={**alice["auth"], **EN, "Cookie": "clinreason_lang=en"})
        assert lang_of(page.text) == "zh-Hans" and h1(page.text).startswith("进度")
        assert page.headers["content-language"] == "zh-Hans"
        # no setting: the browser again
        set_language(engine, alice, None)
        assert h1(client.get("/dashboard", headers={**alice["auth"], **EN}).text).startswith("Progress")


def test_users_add_with_lang_gives_that_user_chinese(engine, project, db_url, client):
    from clinreason.cli import app as cli

    runner = CliRunner()
    base = ["--db", db_url, "--config", "/nonexistent/clinreason.toml"]
    r = runner.invoke(cli, ["users", "add", "wang", "--role", "admin", "--lang", "zh", "--password-stdin", *base],
                      input="a long password\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["users", "add", "smith", "--role", "admin", "--lang", "en", "--password-stdin", *base],
                      input="a long password\n")
    assert r.exit_code == 0, r.output
    bad = runner.invoke(cli, ["users", "add", "li", "--role", "admin", "--lang", "fr", "--password-stdin", *base],
                        input="a long password\n")
    assert bad.exit_code == 1 and "--lang" in bad.output
    listed = runner.invoke(cli, ["users", "list", *base]).output
    assert re.search(r"wang\s+admin\s+zh", listed) and re.search(r"smith\s+admin\s+en", listed)
    wang = {"Authorization": "Bearer " + runner.invoke(cli, ["users", "token", "wang", *base]).output.strip()}
    smith = {"Authorization": "Bearer " + runner.invoke(cli, ["users", "token", "smith", *base]).output.strip()}
    assert client.get("/api/me", headers=wang).json()["language"] == "zh"
    assert h1(client.get("/admin", headers={**wang, **EN}).text) == "管理"
    assert h1(client.get("/admin", headers={**smith, **ZH}).text) == "Admin"


def test_the_header_control_stores_the_users_choice(client, seed):
    seed.user("alice", role="admin")
    assert browser_login(client, "alice").status_code == 303
    page = client.get("/dashboard", headers=EN)
    assert 'action="/language"' in page.text and h1(page.text).startswith("Progress")
    r = client.post("/language", data={"csrf_token": csrf_of(page.text), "language": "zh", "next": "/admin"},
                    headers=EN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    assert "clinreason_lang=zh" in r.headers["set-cookie"]
    assert client.get("/api/me").json()["language"] == "zh"
    # stored with the user: the English browser gets Chinese, and so does a new session without the cookie
    assert h1(client.get("/admin", headers=EN).text) == "管理"
    client.cookies.clear()
    browser_login(client, "alice")
    client.cookies.delete("clinreason_lang")
    assert h1(client.get("/admin", headers=EN).text) == "管理"
    # without the CSRF token nothing changes; a language that is not offered is refused, naming the field
    assert client.post("/language", data={"language": "en"}, headers=EN).status_code == 403
    page = client.get("/admin", headers=EN)
    bad = client.post("/language", data={"csrf_token": csrf_of(page.text), "language": "fr"}, headers=EN)
    assert bad.status_code == 422
    assert client.get("/api/me").json()["language"] == "zh"


def test_put_me_language_over_the_api(client, seed):
    alice = seed.user("alice", role="admin")
    assert client.put("/api/me/language", json={"language": "zh"}, headers=alice["auth"]).status_code == 204
    assert client.get("/api/me", headers=alice["auth"]).json()["language"] == "zh"
    assert h1(client.get("/admin", headers={**alice["auth"], **EN}).text) == "管理"
    bad = client.put("/api/me/language", json={"language": "fr"}, headers=alice["auth"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "language"]
    assert client.put("/api/me/language", json={"language": None}, headers=alice["auth"]).status_code == 204
    assert h1(client.get("/admin", headers={**alice["auth"], **EN}).text) == "Admin"


def test_login_lang_link_switches_and_is_remembered_until_sign_in(client, seed):
    seed.user("alice", role="admin")
    r = client.get("/login?lang=zh", headers=EN)
    assert h1(r.text) == "登录" and "clinreason_lang=zh" in r.headers["set-cookie"]
    assert h1(client.get("/login", headers=EN).text) == "登录"  # the cookie
    assert 'href="/login?lang=en"' in r.text and 'lang="en"' in r.text
    assert h1(client.get("/login?lang=en", headers=ZH).text) == "Sign in"
    assert h1(client.get("/login?lang=xx", headers=ZH).text) == "Sign in"  # an unknown code changes nothing


# --- the pages in each language --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/dashboard", "/admin", "/login"])
def test_the_pages_in_chinese_show_no_english_labels(client, seed, path):
    root = seed.user("root", role="admin")
    seed.item()
    page = client.get(path, headers={**root["auth"], **ZH})
    assert page.status_code == 200
    text = visible(page.text)
    assert lang_of(text) == "zh-Hans" and HAN.search(h1(text))
    for label in NOT_IN_CHINESE:
        assert label not in text, f"{path} shows {label!r} in Chinese"


def test_the_dashboard_names_the_rubric_dimensions_in_each_language(client, seed):
    root = seed.user("root", role="admin")
    seed.item()
    en = client.get("/dashboard", headers={**root["auth"], **EN}).text
    zh = client.get("/dashboard", headers={**root["auth"], **ZH}).text
    assert "Medical correctness" in en and "Progress" in en and "Quality evidence" in en
    assert "医学准确性" in zh and "质量证据" in zh and "进度" in zh
    for page in (en, zh):  # the codes stay as they are
        assert 'data-dimension="correctness"' in page and 'data-state="in_review"' in page


def test_the_login_page_and_its_errors_in_chinese(client, seed):
    seed.user("alice")
    page = client.get("/login", headers=ZH)
    text = page.text
    for label in ("用户名", "密码", "登录"):
        assert label in text
    wrong = client.post("/login", data={"username": "alice", "password": "not it", "csrf_token": csrf_of(text)},
                        headers=ZH)
    assert wrong.status_code == 401 and "用户名或密码错误。" in wrong.text
    expired = client.post("/login", data={"username": "alice", "password": "x", "csrf_token": "forged"}, headers=ZH)
    assert expired.status_code == 403 and "登录表单已过期，请重试。" in expired.text
    page = client.get("/login", headers=EN)
    wrong = client.post("/login", data={"username": "alice", "password": "not it", "csrf_token": csrf_of(page.text)},
                        headers=EN)
    assert wrong.status_code == 401 and "Wrong user name or password." in wrong.text


def test_admin_pages_and_their_notices_in_chinese(client, seed):
    seed.user("root", role="admin")
    seed.other_project("second")
    browser_login(client, "root")  # the user has no setting of their own: Accept-Language decides
    users = client.get("/admin/users", headers=ZH).text
    assert "添加用户" in users and "用户名" in users and "至少 8 个字符" in users and "管理员" in users
    bad = client.post("/admin/users", data={"csrf_token": csrf_of(users), "username": "dave", "role": "wizard",
                                            "password": "long-enough-pw"}, headers=ZH)
    assert bad.status_code == 422 and "role：应为 reviewer, adjudicator, admin 之一，实际为 &#39;wizard&#39;" in bad.text
    taken = client.post("/admin/users", data={"csrf_token": csrf_of(users), "username": "root", "role": "admin",
                                              "password": "long-enough-pw"}, headers=ZH)
    assert taken.status_code == 422 and "用户名为“root”的用户已存在" in taken.text
    projects = client.get("/admin/projects", headers=ZH).text
    assert "切换到此项目" in projects and "当前" in projects and "项目" in h1(projects)
    imported = client.get("/admin/import", headers=ZH).text
    assert "将题目导入 default" in imported and "整个文件作为一个事务导入" in imported
    rubric = client.get("/admin/rubric", headers=ZH).text
    saved = client.post("/admin/rubric", data={"csrf_token": csrf_of(rubric), "rubric": "{not json"}, headers=ZH)
    assert saved.status_code == 422 and "不是有效的 JSON" in saved.text
    assert "待裁决题目（0）" in client.get("/adjudicate", headers=ZH).text


def test_error_pages_in_chinese(client, seed):
    alice, root = seed.user("alice"), seed.user("root", role="admin")
    forbidden = client.get("/admin", headers={**alice["auth"], **ZH})
    assert forbidden.status_code == 403
    assert "无权操作" in forbidden.text and "此操作需要 admin 角色；您当前的角色是 reviewer" in forbidden.text
    missing = client.get("/no/such/page", headers={**root["auth"], **ZH})
    assert missing.status_code == 404 and "未找到" in missing.text and "返回首页" in missing.text


# --- the admin rubric editor with a bilingual rubric ----------------------------------------------

def _textarea(html: str) -> str:
    import html as htmllib

    match = re.search(r'<textarea name="rubric"[^>]*>(.*?)</textarea>', html, flags=re.S)
    assert match
    return htmllib.unescape(match.group(1))


def test_the_rubric_editor_round_trips_titles_given_per_language(client, seed):
    root = seed.user("root", role="admin")
    browser_login(client, "root")
    zh = client.get("/admin/rubric", headers=ZH).text
    en = client.get("/admin/rubric", headers=EN).text
    assert "医学准确性" in zh.split("<textarea")[0] and "Medical correctness" not in zh.split("<textarea")[0]
    assert "Medical correctness" in en.split("<textarea")[0]
    body = json.loads(_textarea(zh))
    assert body["dimensions"][0]["title"] == {"en": "Medical correctness", "zh": "医学准确性"}
    body["dimensions"][0]["title"]["zh"] = "医学正确性"
    r = client.post("/admin/rubric", data={"csrf_token": csrf_of(zh), "rubric": json.dumps(body, ensure_ascii=False)},
                    headers=ZH)
    assert r.status_code == 200 and "已保存为第 2 版" in r.text and "医学正确性" in r.text
    stored = client.get("/api/admin/rubric", headers=root["auth"]).json()["current"]
    assert stored["version"] == 2
    assert stored["dimensions"][0]["title"] == {"en": "Medical correctness", "zh": "医学正确性"}
    assert stored["dimensions"][0]["anchors"]["5"]["zh"] == DEFAULT_RUBRIC_DICT["dimensions"][0]["anchors"]["5"]["zh"]
    assert "Medical correctness" in client.get("/admin/rubric", headers=EN).text.split("<textarea")[0]


def test_a_projects_own_single_language_rubric_still_works(client, seed):
    root = seed.user("root", role="admin")
    browser_login(client, "root")
    own = {"scale": [1, 5], "dimensions": [
        {"name": "accuracy", "title": "准确性", "description": "事实正确", "threshold": 4,
         "anchors": {"1": "错误", "5": "完全正确"}},
        {"name": "clarity", "title": "Clarity", "description": "Easy to follow", "threshold": 3}]}
    page = client.get("/admin/rubric", headers=EN).text
    r = client.post("/admin/rubric", data={"csrf_token": csrf_of(page), "rubric": json.dumps(own, ensure_ascii=False)},
                    headers=EN)
    assert r.status_code == 200 and "Saved as version 2" in r.text
    for headers in (EN, ZH):  # one language given: that text whatever the page's language
        shown = client.get("/admin/rubric", headers=headers).text
        table = shown.split("<textarea")[0]
        assert "准确性" in table and "Clarity" in table and "完全正确" in table
        assert json.loads(_textarea(shown))["dimensions"][0]["title"] == "准确性"
    stored = client.get("/api/admin/rubric", headers=root["auth"]).json()["current"]
    assert stored["dimensions"][1]["title"] == "Clarity"
    dashboard = client.get("/dashboard", headers=ZH).text
    assert "准确性" in dashboard and "Clarity" in dashboard


# --- the API's messages ---------------------------------------------------------------------------

def _lease(client, user) -> str:
    r = client.get("/api/queue/next", headers=user["auth"])
    assert r.status_code == 200
    return r.json()["assignment_id"]


def test_an_invalid_review_is_explained_in_the_requests_language(client, seed):
    alice = seed.user("alice")
    seed.item()  # two steps and a final answer line: three steps
    aid = _lease(client, alice)
    body = {"verdict": "accept", "scores": SCORES, "steps": [{"step": 9, "verdict": "ok"}]}
    zh = client.post(f"/api/assignments/{aid}/review", json=body, headers={**alice["auth"], **ZH})
    en = client.post(f"/api/assignments/{aid}/review", json=body, headers={**alice["auth"], **EN})
    assert zh.status_code == en.status_code == 422
    assert zh.json()["detail"][0]["loc"] == en.json()["detail"][0]["loc"] == ["body", "steps[0]", "step"]
    assert zh.json()["detail"][0]["type"] == en.json()["detail"][0]["type"] == "value_error"
    assert zh.json()["detail"][0]["msg"] == "第 9 步超出范围：此版本共有 3 步（1-3）"
    assert en.json()["detail"][0]["msg"] == "step 9 is out of range: this version has 3 steps (1-3)"
    # a score off the scale and a verdict that is not one: the values stay, the words change
    off = client.post(f"/api/assignments/{aid}/review", headers={**alice["auth"], **ZH},
                      json={"verdict": "accept", "scores": {**SCORES, "correctness": 9}})
    assert off.json()["detail"][0] == {"loc": ["body", "scores", "correctness"], "msg": "9 超出评分范围 1-5",
                                       "type": "value_error"}
    verdict = client.post(f"/api/assignments/{aid}/review", headers={**alice["auth"], **ZH},
                          json={"verdict": "maybe", "scores": SCORES})
    assert verdict.json()["detail"][0] == {"loc": ["body", "verdict"], "type": "literal_error",
                                           "msg": "应为 'accept', 'edit', 'regenerate' 或 'flag_question'"}
    english = client.post(f"/api/assignments/{aid}/review", headers={**alice["auth"], **EN},
                          json={"verdict": "maybe", "scores": SCORES})
    assert english.json()["detail"][0]["msg"] == "Input should be 'accept', 'edit', 'regenerate' or 'flag_question'"
    # the user's own setting decides over the browser's
    client.put("/api/me/language", json={"language": "zh"}, headers=alice["auth"])
    again = client.post(f"/api/assignments/{aid}/review", json=body, headers={**alice["auth"], **EN})
    assert again.json()["detail"][0]["msg"] == "第 9 步超出范围：此版本共有 3 步（1-3）"


def test_401_403_404_409_and_a_malformed_body_in_chinese(client, seed):
    alice, root = seed.user("alice"), seed.user("root", role="admin")
    seed.item()
    unauth = client.get("/api/queue/next", headers=ZH)
    assert unauth.status_code == 401 and unauth.json()["detail"].startswith("未登录：")
    assert client.get("/api/queue/next", headers=EN).json()["detail"].startswith("not signed in")
    login = client.post("/api/login", json={"username": "alice", "password": "wrong password"}, headers=ZH)
    assert login.status_code == 401 and login.json() == {"detail": "用户名或密码错误"}
    forbidden = client.get("/api/admin/users", headers={**alice["auth"], **ZH})
    assert forbidden.status_code == 403 and forbidden.json()["detail"] == "此操作需要 admin 角色；您当前的角色是 reviewer"
    senior = client.post("/api/items/nope/adjudication", json={"action": "exclude", "reason": "x"},
                         headers={**alice["auth"], **ZH})
    assert senior.json()["detail"] == "此操作需要 adjudicator 或 admin 角色；您当前的角色是 reviewer"
    assert client.get("/api/admin/users", headers={**alice["auth"], **EN}).json()["detail"] == \
        "this needs the admin role; you are signed in as reviewer"
    nothing = client.post("/api/items/nope/adjudication", json={"action": "exclude", "reason": "x"},
                          headers={**root["auth"], **ZH})
    assert nothing.status_code == 404 and nothing.json()["detail"] == "本项目中没有题目 nope"
    nobody = client.patch("/api/admin/users/ghost", json={"active": False}, headers={**root["auth"], **ZH})
    assert nobody.status_code == 404 and nobody.json()["detail"] == "没有名为“ghost”的用户"
    aid = _lease(client, alice)
    assert client.post(f"/api/assignments/{aid}/review", json={"verdict": "accept", "scores": SCORES},
                       headers=alice["auth"]).status_code == 201
    closed = client.post(f"/api/assignments/{aid}/review", json={"verdict": "accept", "scores": SCORES},
                         headers={**alice["auth"], **ZH})
    assert closed.status_code == 409 and closed.json()["detail"] == "此审核已提交；审核提交后不能更改"
    user = client.post("/api/admin/users", json={"username": "bob", "password": "short", "role": "reviewer"},
                       headers={**root["auth"], **ZH})
    assert user.status_code == 422
    assert user.json()["detail"][0] == {"loc": ["body", "password"], "msg": "字符串至少应有 8 个字符",
                                        "type": "string_too_short"}
    english = client.post("/api/admin/users", json={"username": "bob", "password": "short", "role": "reviewer"},
                          headers={**root["auth"], **EN})
    assert english.json()["detail"][0]["msg"] == "String should have at least 8 characters"
    role = client.post("/api/admin/users", json={"username": "bob", "password": "long enough", "role": "wizard"},
                       headers={**root["auth"], **ZH})
    # the role is an enum of the document (NewUser.role): refused by the body's model, in Chinese all the same
    assert role.json()["detail"][0] == {"loc": ["body", "role"], "msg": "应为 'reviewer', 'adjudicator' 或 'admin'",
                                        "type": "literal_error"}


# --- how a message template is translated ---------------------------------------------------------

def test_a_translatable_error_keeps_its_english_text():
    from clinreason.domain.steps import StepMarkError, validate_marks
    from clinreason.stages.review import ReviewError
    from clinreason.store.common import NotFoundError

    with pytest.raises(StepMarkError) as caught:
        validate_marks([{"step": 4, "verdict": "ok"}], n_steps=1, categories=["factual_error"])
    assert str(caught.value) == "steps[0].step: step 4 is out of range: this version has 1 step (1-1)"
    assert caught.value.template == "step {step} is out of range: this version has {n} step (1-{n})"
    assert caught.value.params == {"step": 4, "n": 1}
    assert str(NotFoundError("no {what} here", {"what": "item"})) == "no item here"
    plain = ReviewError("file", 'a {"json": "example"} with braces')  # no values: never formatted
    assert plain.message == 'a {"json": "example"} with braces' and plain.params is None


def test_translate_message_falls_back_to_english():
    from clinreason.web import i18n

    with i18n.language("zh"):
        assert i18n.translate_message("step 2 is marked twice", template="step {step} is marked twice",
                                      params={"step": 2}) == "第 2 步被标注了两次"
        assert i18n.translate_message("a message nobody translated") == "a message nobody translated"
        assert i18n.translate_message("no {x}", template="no {x}", params={}) == "no {x}"  # broken: English
        assert i18n.translate_message("") == ""  # never the catalogue's header
    with i18n.language("en"):
        assert i18n.translate_message("step 2 is marked twice", template="step {step} is marked twice",
                                      params={"step": 2}) == "step 2 is marked twice"


def test_upload_refusals_in_the_requests_language(client, seed, web_app):
    root = seed.user("root", role="admin")
    web_app.state.web.settings.max_upload_bytes = 1024 * 1024  # 1 MiB
    big = b'{"question": "q?", "options": {"A": "a", "B": "b"}, "answer_idx": "A"}\n' * 20_000
    zh = client.post("/api/admin/import", headers={**root["auth"], **ZH}, files={"file": ("bank.jsonl", big)})
    en = client.post("/api/admin/import", headers={**root["auth"], **EN}, files={"file": ("bank.jsonl", big)})
    assert zh.status_code == en.status_code == 413
    assert zh.json()["detail"].startswith("上传文件超过 1 MiB 的上限（CLINREASON_MAX_UPLOAD_MB）")
    assert en.json()["detail"].startswith("the upload is larger than the limit of 1 MiB")
    not_multipart = client.post("/api/admin/import", headers={**root["auth"], **ZH}, content=b"x")
    assert not_multipart.status_code == 422
    assert not_multipart.json()["detail"][0] == {
        "loc": ["body", "file"], "type": "value_error",
        "msg": "请以 multipart/form-data 格式发送题库，文件放在字段 'file' 中"}


def test_throttled_sign_ins_and_a_missing_item_in_chinese(client, seed):
    alice = seed.user("alice")
    for _attempt in range(5):
        assert client.post("/api/login", json={"username": "alice", "password": "wrong password"}).status_code == 401
    throttled = client.post("/api/login", json={"username": "alice", "password": "wrong password"}, headers=ZH)
    assert throttled.status_code == 429 and throttled.headers["retry-after"].isdigit()
    assert throttled.json()["detail"] == f"登录失败次数过多：请在 {throttled.headers['retry-after']} 秒后重试"
    page = client.get("/login", headers=ZH)
    form = client.post("/login", data={"username": "alice", "password": "wrong password",
                                       "csrf_token": csrf_of(page.text)}, headers=ZH)
    assert form.status_code == 429 and "登录失败次数过多" in form.text
    missing = client.get("/api/items/nope", headers={**alice["auth"], **ZH})
    assert missing.status_code == 404 and missing.json()["detail"] == "项目“default”中不存在题目 nope"
